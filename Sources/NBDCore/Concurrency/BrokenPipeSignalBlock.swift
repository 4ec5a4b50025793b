#if canImport(Glibc)
    import Glibc
#endif

/// SIGPIPE blocked on the calling thread while it writes to a pipe or socket whose reader may have
/// left: such a write fails with `EPIPE` and raises SIGPIPE on the writing thread, which kills the
/// process unless it ignores the signal, and a program that embeds this package may not. `send`
/// has `MSG_NOSIGNAL`; `write` to a pipe and `sendfile` have nothing like it.
///
/// ```swift
/// var pipeSignal = BrokenPipeSignalBlock()
/// defer { pipeSignal.end() }
/// if write(fd, bytes, count) < 0 && errno == EPIPE { pipeSignal.raised = true }
/// ```
package struct BrokenPipeSignalBlock {
    private var signal = sigset_t()
    private var previousMask = sigset_t()
    /// Set when a write failed with `EPIPE` (and so raised the signal, now pending): ``end()``
    /// takes it back before the mask is restored.
    package var raised = false

    /// Blocks SIGPIPE on this thread until ``end()``.
    package init() {
        sigemptyset(&signal)
        sigaddset(&signal, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &signal, &previousMask)
    }

    /// Takes back a SIGPIPE that ``raised`` says is pending and restores the thread's signal mask.
    /// Call it once, on the thread that made the block.
    package mutating func end() {
        if raised {
            var zero = timespec(tv_sec: 0, tv_nsec: 0)
            while sigtimedwait(&signal, nil, &zero) == SIGPIPE {}
        }
        pthread_sigmask(SIG_SETMASK, &previousMask, nil)
    }
}
