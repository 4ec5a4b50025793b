/// Who is at the other end of a Unix-domain socket, as the kernel reports it (`SO_PEERCRED`): the
/// client process's ID, user ID and group ID when it connected.
public struct PeerCredentials: Sendable, Hashable {
    /// The client's process ID. Process IDs are reused, so on its own it proves little.
    public var pid: Int32
    /// The client's effective user ID.
    public var uid: UInt32
    /// The client's effective group ID.
    public var gid: UInt32

    /// Creates credentials.
    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}
