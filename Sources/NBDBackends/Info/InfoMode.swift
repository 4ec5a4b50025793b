/// What nbdkit's info plugin serves (`mode=`).
public enum InfoMode: String, Sendable, Hashable, CaseIterable {
    /// The export name the client asked for, as bytes (the default).
    case exportName = "exportname"
    /// The export name, base64-decoded.
    case base64ExportName = "base64exportname"
    /// The client's address and port as text (`127.0.0.1:40000`, `[::1]:40000`), or `unix`.
    case address
    /// The server's wall-clock time: 8 bytes of seconds and 4 of microseconds since the Epoch, big-endian.
    case time
    /// The time since the export was created, in the same 12-byte format.
    case uptime
    /// The time since the connection opened, in the same 12-byte format.
    case connTime = "conntime"
}
