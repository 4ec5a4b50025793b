/// How an ``RBDProvider`` opens the image for its client connections.
public enum RBDHandleMode: String, Sendable, Hashable, CaseIterable {
    /// Each client connection opens an image handle of its own and closes it when it ends, as nbdkit
    /// opens a plugin handle per connection. Each handle has its own librbd cache and takes the
    /// image's exclusive lock from the others when it writes.
    case perConnection = "per-connection"
    /// One handle, opened at start, serves every client connection, as qemu-nbd does: one cache,
    /// one exclusive-lock owner, flushes visible to every connection.
    case shared
}
