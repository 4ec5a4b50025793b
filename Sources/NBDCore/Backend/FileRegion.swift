/// Where an open file holds a range of an export's bytes exactly as they are, so that the server
/// can send them to the client straight from the file (`sendfile`) instead of reading them into a
/// buffer first. See ``BlockBackend/fileRegion(count:at:)``.
///
/// The descriptor belongs to the backend that reported it and stays open while that backend is
/// open; whoever receives a region only reads from it (with `pread`-style positioned calls, never
/// moving the file position) and never closes it.
public struct FileRegion: Sendable, Hashable {
    /// The open file that holds the bytes.
    public var descriptor: Int32
    /// Where in the file the bytes start.
    public var offset: UInt64

    /// A region starting at `offset` in the file open as `descriptor`.
    public init(descriptor: Int32, offset: UInt64) {
        self.descriptor = descriptor
        self.offset = offset
    }
}
