import NBDCore
import Synchronization

/// What the test export records, shared by the provider and every backend it opened.
package final class ExportState: Sendable {
    package let data: Mutex<[UInt8]>
    package let opens = Atomic<Int>(0)
    package let closes = Atomic<Int>(0)
    package let shutdowns = Atomic<Int>(0)
    /// Holds writes until opened; `nil` lets them through.
    package let writeGate: WriteGate?

    package init(size: Int, writeGate: WriteGate? = nil) {
        data = Mutex([UInt8](repeating: 0, count: size))
        self.writeGate = writeGate
    }

    package func bytes(at offset: Int, count: Int) -> [UInt8] {
        data.withLock { Array($0[offset..<offset + count]) }
    }
}

/// An in-memory export for the bridges' tests: writes suspend (so several are in flight on one
/// connection) and may be held at a ``WriteGate``; trim always fails with `EIO`, to count failures.
package struct GatedMemoryProvider: BackendProvider {
    package let state: ExportState

    package init(state: ExportState) {
        self.state = state
    }

    package func open(_ connection: ConnectionInfo) async throws(NBDError) -> GatedMemoryBackend {
        state.opens.add(1, ordering: .relaxed)
        return GatedMemoryBackend(state: state)
    }

    package func shutdown() async {
        state.shutdowns.add(1, ordering: .relaxed)
    }
}

package struct GatedMemoryBackend: BlockBackend {
    package let state: ExportState

    package var capabilities: Capabilities {
        Capabilities(size: UInt64(state.data.withLock { $0.count }), suspendingOperations: [.write])
    }

    package func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        state.data.withLock { data in
            data.withUnsafeBytes { source in
                buffer.copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: source[Int(offset)..<(Int(offset) + buffer.count)]))
            }
        }
    }

    package func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        // The bytes are only valid during the call, so they are copied before suspending.
        let copy = Array(bytes)
        if let gate = state.writeGate { await gate.pass() }
        state.data.withLock { data in data.replaceSubrange(Int(offset)..<(Int(offset) + copy.count), with: copy) }
    }

    package func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        state.data.withLock { data in
            data.replaceSubrange(
                Int(offset)..<Int(offset + count), with: repeatElement(UInt8(0), count: Int(count)))
        }
    }

    package func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.ioError, "the test export fails every trim")
    }

    package func close() async {
        state.closes.add(1, ordering: .relaxed)
    }
}

/// Holds the operations that pass it until the test opens it, and lets the test wait (bounded)
/// until a number of them have arrived: deterministic stepping instead of sleeps.
package final class WriteGate: Sendable {
    package init() {}

    private struct State {
        var isOpen = false
        var arrivals = 0
        var held: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    package func pass() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let open = state.withLock { state -> Bool in
                state.arrivals += 1
                if state.isOpen { return true }
                state.held.append(continuation)
                return false
            }
            if open { continuation.resume() }
        }
    }

    package var arrivals: Int { state.withLock { $0.arrivals } }

    package func open() {
        let held = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.isOpen = true
            defer { state.held = [] }
            return state.held
        }
        for continuation in held { continuation.resume() }
    }
}
