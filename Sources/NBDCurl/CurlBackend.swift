import NBDCore

/// One client connection's view of a disk image served over HTTP(S): reads are range requests
/// and writes `PUT`s, done by the transfer thread and handles its ``CurlProvider`` shares among
/// every connection.
public struct CurlBackend: BlockBackend {
    public let capabilities: Capabilities
    private let pool: CurlTransferPool

    init(capabilities: Capabilities, pool: CurlTransferPool) {
        self.capabilities = capabilities
        self.pool = pool
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        guard !buffer.isEmpty else { return }
        // The buffer stays valid while this task is suspended waiting for the transfer.
        let target = UncheckedBuffer(mutable: buffer)
        try await pool.perform(bytes: buffer.count) { (handle) throws(NBDError) in
            try handle.startRead(into: target.mutable, at: offset)
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        guard !data.isEmpty else { return }
        let source = UncheckedBuffer(data)
        let size = capabilities.size
        try await pool.perform(bytes: data.count) { (handle) throws(NBDError) in
            try handle.startWrite(source.immutable, at: offset, exportSize: size)
        }
    }

    public func close() async {
        pool.clientClosed()
    }

    /// Zeroes are written as data, as nbdkit emulates them for a plugin without a zero callback.
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if flags.contains(.fastZero) { throw NBDError(.notSupported, "curl: zeroes are written as data, not fast") }
        let chunk = min(count, 1 << 20)
        let zeroes = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(chunk), alignment: 16)
        defer { zeroes.deallocate() }
        zeroes.initializeMemory(as: UInt8.self, repeating: 0)
        var done: UInt64 = 0
        while done < count {
            let length = Int(min(chunk, count - done))
            try await write(UnsafeRawBufferPointer(rebasing: zeroes[0..<length]), at: offset + done, flags: flags)
            done += UInt64(length)
        }
    }
}

/// A request's buffer handed to the transfer thread. Not `Sendable` by itself: the request's task
/// owns the memory and waits, suspended, until the thread is done with it.
struct UncheckedBuffer: @unchecked Sendable {
    private let base: UnsafeMutableRawPointer?
    private let count: Int

    init(mutable buffer: UnsafeMutableRawBufferPointer) {
        base = buffer.baseAddress
        count = buffer.count
    }

    init(_ buffer: UnsafeRawBufferPointer) {
        base = UnsafeMutableRawPointer(mutating: buffer.baseAddress)
        count = buffer.count
    }

    var mutable: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }
    var immutable: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
}
