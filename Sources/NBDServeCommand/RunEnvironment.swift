import NBDServer

/// The shell variables `nbd-serve --run` gives its command, as nbdkit's `--run` does: `$uri` and
/// `$nbd` (the same URI, nbdkit's older name), `$unixsocket`, `$port`, `$exportname` (`-e`), and
/// `$tls` (`1` for `--tls=on`, `2` for `--tls=require`, unset for off).
package enum RunEnvironment {
    /// Each variable's value, or `nil` for one that must be unset.
    package static func variables(for bound: ListenAddress, tls: TLSMode, exportName: String) -> [String: String?] {
        let address = uri(for: bound, tls: tls, exportName: exportName)
        var variables: [String: String?] = ["uri": address, "nbd": address, "exportname": exportName]
        switch bound {
        case .unix(let path):
            variables["unixsocket"] = path
            variables["port"] = ""
        case .tcp(_, let port):
            variables["port"] = String(port)
            variables["unixsocket"] = ""
        }
        switch tls {
        case .off: variables["tls"] = .some(nil)
        case .on: variables["tls"] = "1"
        case .require: variables["tls"] = "2"
        }
        return variables
    }

    /// The URI a client of `bound` uses for `exportName` (``ListenAddress/uri(exportName:)``), with
    /// `nbds` under `--tls=require` (the client adds its credentials), as nbdkit gives it.
    package static func uri(for bound: ListenAddress, tls: TLSMode, exportName: String) -> String {
        let plain = bound.uri(exportName: exportName)
        return tls == .require ? "nbds" + plain.dropFirst(3) : plain
    }
}
