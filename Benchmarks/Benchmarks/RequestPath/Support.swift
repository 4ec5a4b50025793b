import NBDCore

/// Holds the backend a benchmark's setup hook opened, for its closure to use. The benchmark runner
/// calls setup, closure and teardown one after another, never at the same time.
final class BackendHolder<Backend: BlockBackend>: @unchecked Sendable {
    var backend: Backend?
}

/// A buffer allocated once per benchmark and reused by every iteration.
struct SendableBuffer: @unchecked Sendable {
    let buffer: UnsafeMutableRawBufferPointer
    init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }
}

/// A backend whose requests do nothing, so that a filter over it is measured alone.
struct NullBackend: BlockBackend {
    let capabilities = Capabilities(size: 1 << 30, canMultiConn: true)

    @inlinable
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    @inlinable
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
}
