import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The reason to exit, delivered once, by whichever comes first: a signal or the end of the `--run`
/// command.
final class ExitSignal: Sendable {
    private let state = LockedValue<(code: Int32?, waiter: CheckedContinuation<Int32, Never>?)>((nil, nil))

    /// Delivers `code` unless a code was delivered already.
    func finish(_ code: Int32) {
        let waiter = state.withLock { state -> CheckedContinuation<Int32, Never>? in
            guard state.code == nil else { return nil }
            state.code = code
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: code)
    }

    /// Waits for the code.
    func wait() async -> Int32 {
        await withCheckedContinuation { continuation in
            let code = state.withLock { state -> Int32? in
                if let code = state.code { return code }
                state.waiter = continuation
                return nil
            }
            if let code { continuation.resume(returning: code) }
        }
    }
}
