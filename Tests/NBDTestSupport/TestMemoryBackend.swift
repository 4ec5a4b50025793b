import NBDCore
import Synchronization

/// A small in-memory backend for filter tests: a byte array, capabilities chosen by the test, and
/// failures that can be injected per command.
///
/// It deliberately knows nothing about FUA or flush semantics beyond recording nothing itself: place a
/// ``RecordingFilter`` over it to see which operations and flags reach it.
///
/// ```swift
/// let backend = TestMemoryBackend(capabilities: Capabilities(size: 1 << 20, fua: .none))
/// backend.failNext(.write, with: NBDError(.ioError, "disk on fire"))
/// ```
public final class TestMemoryBackend: BlockBackend {
    public let capabilities: Capabilities
    private let storage: LockedValue<[UInt8]>
    private let failures = LockedValue<[Command: [NBDError]]>([:])
    private let closeCount = Atomic<Int>(0)

    /// Creates a zero-filled backend of `capabilities.size` bytes (keep it small: it is an array).
    public init(capabilities: Capabilities) {
        self.capabilities = capabilities
        self.storage = LockedValue([UInt8](repeating: 0, count: Int(capabilities.size)))
    }

    /// Creates a backend of `size` bytes with the default (everything native) capabilities.
    public convenience init(size: UInt64 = 1 << 20) {
        self.init(capabilities: Capabilities(size: size))
    }

    /// Makes the next `command` fail with `error` (queued: call twice to fail twice).
    public func failNext(_ command: Command, with error: NBDError) {
        failures.withLock { $0[command, default: []].append(error) }
    }

    /// How many times ``close()`` was called.
    public var closed: Int { closeCount.load(ordering: .relaxed) }

    private func injectedFailure(_ command: Command) throws(NBDError) {
        let error: NBDError? = failures.withLock { queued in
            guard var list = queued[command], !list.isEmpty else { return nil }
            let first = list.removeFirst()
            queued[command] = list
            return first
        }
        if let error { throw error }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try injectedFailure(.read)
        storage.withLock { bytes in
            let start = Int(offset)
            for i in 0..<buffer.count { buffer[i] = bytes[start + i] }
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try injectedFailure(.write)
        storage.withLock { bytes in
            let start = Int(offset)
            for i in 0..<data.count { bytes[start + i] = data[i] }
        }
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try injectedFailure(.writeZeroes)
        storage.withLock { bytes in
            for i in Int(offset)..<Int(offset + count) { bytes[i] = 0 }
        }
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try injectedFailure(.trim)
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        try injectedFailure(.flush)
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try injectedFailure(.cache)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try injectedFailure(.blockStatus)
        return [.data(count)]
    }

    public func close() async {
        closeCount.wrappingAdd(1, ordering: .relaxed)
    }
}
