import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// `--exit-with-parent`: stops the server when the process that started it exits.
///
/// It checks once a second whether `getppid()` changed (the parent's death reparents this process).
/// nbdkit asks the kernel instead (`PR_SET_PDEATHSIG`), which fires when the *thread* that started
/// it ends, even if its process lives on; following the process avoids that caveat, at the cost of
/// up to a second's delay.
enum ParentWatch {
    /// Starts watching for `parent` to be gone (the first check runs at once); keep the returned
    /// source alive.
    static func start(_ exitSignal: ExitSignal, parent: pid_t) -> any DispatchSourceTimer {
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "nbd-serve.parent"))
        timer.schedule(deadline: .now(), repeating: .seconds(1), leeway: .milliseconds(100))
        timer.setEventHandler {
            if getppid() != parent {
                printToStandardError("nbd-serve: stopping (the parent process exited; --exit-with-parent)")
                exitSignal.finish(0)
            }
        }
        timer.resume()
        return timer
    }
}
