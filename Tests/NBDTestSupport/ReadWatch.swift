import Dispatch
import NBDCore
import Synchronization

/// Lets a test see reads as they start: a semaphore per offset that is signalled when a read at
/// that offset begins, and, for each read, the value of a counter the test keeps (such as how many
/// reply bytes its client has received so far). Reads can also be made to keep their thread busy.
///
/// Put ``ReadWatchLayer`` in a ``FilterStack`` above the export.
public final class ReadWatch: Sendable {
    private struct State {
        var arrivals: [UInt64: DispatchSemaphore] = [:]
        var starts: [(offset: UInt64, counter: Int)] = []
    }

    private let state = LockedValue(State())
    /// A value the test updates; every read records it when it starts.
    public let counter = Atomic<Int>(0)
    /// How long every read computes (keeping its thread, as a slow device would) before it reads.
    package let busyTime = LockedValue<Duration>(.zero)

    public init() {}

    /// The semaphore signalled each time a read at `offset` starts.
    public func arrivals(at offset: UInt64) -> DispatchSemaphore {
        state.withLock { state in
            if let semaphore = state.arrivals[offset] { return semaphore }
            let semaphore = DispatchSemaphore(value: 0)
            state.arrivals[offset] = semaphore
            return semaphore
        }
    }

    /// The value of ``counter`` when the first read at `offset` started, or `nil` if none did.
    public func counterAtStart(of offset: UInt64) -> Int? {
        state.withLock { state in state.starts.first { $0.offset == offset }?.counter }
    }

    func readStarts(at offset: UInt64) {
        let value = counter.load(ordering: .sequentiallyConsistent)
        state.withLock { $0.starts.append((offset, value)) }
        arrivals(at: offset).signal()
        let busy = busyTime.withLock { $0 }
        if busy > .zero {
            let end = ContinuousClock.now + busy
            while ContinuousClock.now < end {}
        }
    }
}

/// A pass-through filter that tells a ``ReadWatch`` when each read starts.
public struct ReadWatchFilter<Next: BlockBackend>: Filter {
    public let next: Next
    public let watch: ReadWatch

    public init(wrapping next: Next, watch: ReadWatch) {
        self.next = next
        self.watch = watch
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        watch.readStarts(at: offset)
        try await next.read(into: buffer, at: offset, flags: flags)
    }
}

/// A ``FilterLayer`` that inserts a ``ReadWatchFilter`` into run-time stacks.
public struct ReadWatchLayer: FilterLayer {
    public let watch: ReadWatch
    public var name: String { "read-watch" }

    public init(watch: ReadWatch) { self.watch = watch }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend {
        AnyBlockBackend(ReadWatchFilter(wrapping: next, watch: watch))
    }
}
