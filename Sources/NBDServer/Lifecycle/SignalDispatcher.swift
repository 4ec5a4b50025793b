import NBDCore
import NBDWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Where the C signal handler writes each signal's number: the write end of the dispatcher's pipe,
/// or -1. A global `Atomic` so that the handler reads it without locks or lazy initialization
/// (``SignalDispatcher/register(_:handler:)`` touches it before any handler is installed).
private let signalPipeWriteEnd = Atomic<Int32>(-1)

/// The process-wide part of ``SignalHandler``: one `sigaction` handler per signal that only
/// writes the signal's number into a pipe (the self-pipe pattern; `write` is async-signal-safe),
/// and one thread that reads the pipe and calls every handler registered for that number.
///
/// Dispatch's signal sources are not used: on Linux they receive a signal through a `signalfd`,
/// which sees it only where every thread blocks it, and a server's threads, started before the
/// source, do not; the signal then goes to one of them and is lost.
enum SignalDispatcher {
    private struct State {
        var handlers: [Int32: [UInt64: @Sendable (Int32) -> Void]] = [:]
        var previousActions: [Int32: sigaction] = [:]
        var nextID: UInt64 = 0
        var started = false
    }

    private static let state = LockedValue(State())

    /// Calls `handler` with the signal's number each time `number` arrives, from the dispatcher's
    /// thread, until ``unregister(_:id:)``. Returns the registration's id, or `nil` when the pipe
    /// or its thread could not be created.
    static func register(_ number: Int32, handler: @escaping @Sendable (Int32) -> Void) -> UInt64? {
        state.withLock { state -> UInt64? in
            guard state.started || start() else { return nil }
            state.started = true
            state.nextID += 1
            let id = state.nextID
            if state.handlers[number, default: [:]].isEmpty {
                var action = sigaction()
                action.__sigaction_handler.sa_handler = { number in
                    let saved = errno
                    var byte = UInt8(truncatingIfNeeded: number)
                    _ = write(signalPipeWriteEnd.load(ordering: .relaxed), &byte, 1)
                    errno = saved
                }
                sigemptyset(&action.sa_mask)
                action.sa_flags = SA_RESTART
                var previous = sigaction()
                sigaction(number, &action, &previous)
                state.previousActions[number] = previous
            }
            state.handlers[number, default: [:]][id] = handler
            return id
        }
    }

    /// Ends the registration `id` for `number`; the last one gives the signal back the action it
    /// had before.
    static func unregister(_ number: Int32, id: UInt64) {
        state.withLock { state in
            guard state.handlers[number]?.removeValue(forKey: id) != nil else { return }
            guard state.handlers[number]?.isEmpty ?? true else { return }
            state.handlers[number] = nil
            if var previous = state.previousActions.removeValue(forKey: number) {
                sigaction(number, &previous, nil)
            }
        }
    }

    /// Creates the pipe and the thread that reads it. Called once, under the lock.
    private static func start() -> Bool {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return false }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        // A full pipe (signals arriving faster than handlers run) drops the extra bytes instead of
        // blocking the signal handler.
        _ = fcntl(ends[1], F_SETFL, fcntl(ends[1], F_GETFL) | O_NONBLOCK)
        signalPipeWriteEnd.store(ends[1], ordering: .releasing)
        let readEnd = ends[0]
        let started = ThreadStarter.start(name: "NBDServer.signals") {
            var buffer = [UInt8](repeating: 0, count: 64)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { return }
                for number in buffer.prefix(count).map({ Int32($0) }) {
                    let handlers = state.withLock { state in state.handlers[number].map { Array($0.values) } ?? [] }
                    for handler in handlers { handler(number) }
                }
            }
        }
        if !started {
            signalPipeWriteEnd.store(-1, ordering: .releasing)
            close(ends[0])
            close(ends[1])
        }
        return started
    }
}
