import NBDCore

/// nbdkit's checkwrite filter for one connection: turns every write into a check that the data
/// already below is the same, so a copying tool can copy an export onto itself
/// (`nbdcopy "$uri" "$uri"`) and any byte it gets wrong fails with `EIO`.
///
/// ```swift
/// let export = try FileBackendProvider(path: "disk.img", isReadOnly: true)
///     .wrapped { next, connection in CheckWriteFilter(wrapping: next, connection: connection) }
/// ```
///
/// Nothing is ever written below (the command line opens it read-only). Zeroes and trims check that
/// the range reads as zero, skipping what the layer below reports as zero extents, and a fast zero
/// over data fails with `ENOTSUP` as nbdkit's does. Sparseness is not compared: a copy may add or
/// remove holes.
public struct CheckWriteFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// A writable export with native flush, FUA, trim, zero, fast zero and multi-conn.
    public let capabilities: Capabilities

    /// The largest read the filter makes at a time while checking a zero or trim.
    static var chunk: UInt64 { 1 << 20 }

    /// Wraps `next`; a read-only `connection` keeps a read-only view.
    public init(wrapping next: Next, connection: ConnectionInfo = ConnectionInfo()) {
        let below = next.capabilities
        var caps = below
        caps.isWritable = !connection.isReadOnly
        caps.canFlush = true
        caps.fua = caps.isWritable ? .native : .none
        caps.canTrim = caps.isWritable
        caps.canZero = caps.isWritable
        caps.canFastZero = caps.isWritable
        caps.canMultiConn = true
        // Writes, zeroes and trims are reads below, so they wait like reads.
        caps.slowOperations.remove([.write, .zero, .trim, .flush])
        if below.slowOperations.contains(.read) { caps.slowOperations.formUnion([.write, .zero, .trim]) }
        caps.suspendingOperations.remove([.write, .zero, .trim, .flush])
        if below.suspendingOperations.contains(.read) { caps.suspendingOperations.formUnion([.write, .zero, .trim]) }
        self.next = next
        self.capabilities = caps
    }

    private static func mismatch(_ operation: String, at offset: UInt64) -> NBDError {
        NBDError(.ioError, "checkwrite: \(operation) at offset \(offset) does not match the data already there")
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let existing = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count, alignment: 16)
        defer { existing.deallocate() }
        try await next.read(into: existing, at: offset, flags: [])
        guard data.elementsEqual(existing) else { throw Self.mismatch("write", at: offset) }
    }

    /// Nothing was written, so nothing needs flushing.
    public func flush(flags: CommandFlags) async throws(NBDError) {}

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await checkZero("zero", count: count, at: offset, fast: flags.contains(.fastZero))
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await checkZero("trim", count: count, at: offset, fast: false)
    }

    private func checkZero(_ operation: String, count: UInt64, at offset: UInt64, fast: Bool) async throws(NBDError) {
        var position = offset
        let end = offset + count
        while position < end {
            // Where block status says zero, there is nothing to read.
            var runEnd = end
            if next.capabilities.canExtents {
                let extent = try await next.extents(count: end - position, at: position, flags: [])
                guard let first = extent.first, first.length > 0 else {
                    throw NBDError(.ioError, "checkwrite: the layer below reported no extent at offset \(position)")
                }
                runEnd = min(end, position + first.length)
                if first.flags.contains(.zero) {
                    position = runEnd
                    continue
                }
            }
            if fast {
                throw NBDError(.notSupported, "checkwrite: a fast zero over data at offset \(position) would be slow")
            }
            try await checkReadsAsZero(operation, from: position, to: runEnd)
            position = runEnd
        }
    }

    private func checkReadsAsZero(_ operation: String, from start: UInt64, to end: UInt64) async throws(NBDError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: Int(min(end - start, Self.chunk)), alignment: 16)
        defer { buffer.deallocate() }
        var position = start
        while position < end {
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[..<Int(min(end - position, Self.chunk))])
            try await next.read(into: part, at: position, flags: [])
            guard part.allSatisfy({ $0 == 0 }) else { throw Self.mismatch(operation, at: position) }
            position += UInt64(part.count)
        }
    }
}
