import NBDGnuTLS
import NBDServer

/// A GnuTLS session is what ``TLSServerTransport`` hands NBDServer after `NBD_OPT_STARTTLS`.
extension TLSSession: SecureSession {}
