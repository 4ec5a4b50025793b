import NBDCore
import Synchronization

/// nbdkit's count filter for one connection: adds up the bytes read, written, zeroed and trimmed
/// (successful requests only) into counts the export's connections share. One relaxed atomic
/// addition per data request; nothing else changes.
///
/// ```swift
/// let counts = ByteCounts()
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in CountFilter(wrapping: next, counts: counts) }
/// ```
public struct CountFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The shared counts.
    public let counts: ByteCounts

    /// Wraps `next`, adding to `counts`.
    public init(wrapping next: Next, counts: ByteCounts) {
        self.next = next
        self.counts = counts
    }

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await next.read(into: buffer, at: offset, flags: flags)
        counts.add(read: UInt64(buffer.count))
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.write(data, at: offset, flags: flags)
        counts.add(written: UInt64(data.count))
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.zero(count: count, at: offset, flags: flags)
        counts.add(zeroed: count)
    }

    @inlinable
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await next.trim(count: count, at: offset, flags: flags)
        counts.add(trimmed: count)
    }
}

extension ByteCounts {
    @usableFromInline
    func add(read: UInt64 = 0, written: UInt64 = 0, zeroed: UInt64 = 0, trimmed: UInt64 = 0) {
        if read > 0 { readBytes.wrappingAdd(read, ordering: .relaxed) }
        if written > 0 { writtenBytes.wrappingAdd(written, ordering: .relaxed) }
        if zeroed > 0 { zeroedBytes.wrappingAdd(zeroed, ordering: .relaxed) }
        if trimmed > 0 { trimmedBytes.wrappingAdd(trimmed, ordering: .relaxed) }
    }
}
