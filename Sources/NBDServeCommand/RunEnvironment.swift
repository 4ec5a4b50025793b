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

    /// The URI a client of `bound` uses for `exportName`: `nbds` under `--tls=require` (the client
    /// adds its credentials), the export name percent-encoded as the path.
    package static func uri(for bound: ListenAddress, tls: TLSMode, exportName: String) -> String {
        let scheme = tls == .require ? "nbds" : "nbd"
        let path = percentEncoded(exportName)
        switch bound {
        case .unix(let socket):
            return "\(scheme)+unix:///\(path)?socket=\(socket)"
        case .tcp(let host, let port):
            let shown = host.contains(":") ? "[\(host)]" : host
            return exportName.isEmpty ? "\(scheme)://\(shown):\(port)" : "\(scheme)://\(shown):\(port)/\(path)"
        }
    }

    /// `name` with every byte but ASCII letters, digits, `-._~` and `/` written as `%XX`.
    private static func percentEncoded(_ name: String) -> String {
        var encoded = ""
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"), UInt8(ascii: "/"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                encoded += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 15)]], as: UTF8.self)
            }
        }
        return encoded
    }
}
