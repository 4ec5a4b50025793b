import NBDCore
import Synchronization

/// A minimal in-memory export shared by all connections, advertising multi-conn and flush (like
/// nbdkit's memory plugin). Flush may be made to fail or to wait at a gate.
final class SharedMemoryTestProvider: BackendProvider, Sendable {
    let bytes: LockedValue<[UInt8]>
    let size: UInt64
    let canMultiConn: Bool
    let canFlush: Bool
    /// Flushes that reached the store, per connection id.
    let flushes = LockedValue<[UInt64: Int]>([:])
    /// Connection ids whose next flushes fail, with how many failures remain.
    let failingFlushes = LockedValue<[UInt64: Int]>([:])
    /// When set, each flush runs this first (a gate or a barrier).
    let beforeFlush: LockedValue<(@Sendable (UInt64) async -> Void)?> = LockedValue(nil)

    init(size: UInt64, canMultiConn: Bool = true, canFlush: Bool = true) {
        self.size = size
        self.bytes = LockedValue([UInt8](repeating: 0, count: Int(size)))
        self.canMultiConn = canMultiConn
        self.canFlush = canFlush
    }

    func open(_ connection: ConnectionInfo) async throws(NBDError) -> Backend {
        Backend(provider: self, id: connection.id)
    }

    struct Backend: BlockBackend {
        let provider: SharedMemoryTestProvider
        let id: UInt64

        var capabilities: Capabilities {
            Capabilities(
                size: provider.size, canFlush: provider.canFlush, fua: provider.canFlush ? .native : .none,
                canMultiConn: provider.canMultiConn)
        }

        func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
            provider.bytes.withLock { bytes in
                bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + buffer.count])) }
            }
        }

        func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
            provider.bytes.withLock { bytes in
                bytes.replaceSubrange(Int(offset)..<Int(offset) + data.count, with: data)
            }
        }

        func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
            provider.bytes.withLock { bytes in
                bytes.replaceSubrange(Int(offset)..<Int(offset + count), with: repeatElement(0, count: Int(count)))
            }
        }

        func flush(flags: CommandFlags) async throws(NBDError) {
            if let hook = provider.beforeFlush.withLock({ $0 }) { await hook(id) }
            let fail = provider.failingFlushes.withLock { failing -> Bool in
                guard let remaining = failing[id], remaining > 0 else { return false }
                failing[id] = remaining - 1
                return true
            }
            if fail { throw NBDError(.ioError, "injected flush failure on connection \(id)") }
            provider.flushes.withLock { $0[id, default: 0] += 1 }
        }
    }
}
