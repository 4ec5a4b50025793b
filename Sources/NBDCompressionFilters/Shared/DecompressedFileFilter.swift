import NBDCore

/// One connection's view of a decompressed copy: reads come from the copy, the layer below is kept
/// open only to close it with the connection. Read-only, as nbdkit's gzip and bzip2 filters are.
struct DecompressedFileFilter<Next: BlockBackend>: BlockBackend {
    let next: Next
    let file: DecompressedFile
    let format: String
    let capabilities: Capabilities

    init(wrapping next: Next, file: DecompressedFile, format: String) {
        self.next = next
        self.file = file
        self.format = format
        self.capabilities = .decompressed(size: file.size, below: next.capabilities)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        try file.read(into: buffer, at: offset, format: format)
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "\(format): the export is read-only")
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "\(format): the export is read-only")
    }

    func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "\(format): the export is read-only")
    }

    func flush(flags: CommandFlags) async throws(NBDError) {}

    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        [.data(count)]
    }

    func close() async {
        await next.close()
    }
}
