/// Whether a server offers TLS and whether it insists on it: nbdkit's `--tls=off|on|require`.
public enum TLSMode: String, Sendable, Hashable, CaseIterable {
    /// `NBD_OPT_STARTTLS` is refused with `NBD_REP_ERR_UNSUP`; every client is served in plaintext.
    case off
    /// Clients may upgrade with `NBD_OPT_STARTTLS`, and plaintext clients are served too.
    case on
    /// Before `NBD_OPT_STARTTLS`, every option except `NBD_OPT_STARTTLS` and `NBD_OPT_ABORT` is
    /// refused with `NBD_REP_ERR_TLS_REQD` and `NBD_OPT_EXPORT_NAME` disconnects, so no export name,
    /// size or list is sent in clear text.
    case require
}
