import Foundation
import Glibc
import NBDCore
import Synchronization

/// What sh and eval share: the per-server temporary directory (`$tmpdir`), the environment every
/// method sees, and how a method name becomes a process to run.
///
/// One host serves the whole server, across connections. ``shutdown()`` runs `unload` and removes
/// the directory.
package final class ScriptHost: Sendable {
    /// How methods are run.
    package enum Invocation: Sendable {
        /// sh: one executable, called as `SCRIPT METHOD ARGS...`.
        case script(path: String)
        /// eval: one snippet file per method (in the temporary directory), and the file run for a
        /// method without one (`missing=`), or `nil` for nbdkit's default `exit 2`.
        case snippets(methods: [String: String], missing: String?)
    }

    /// `$tmpdir`: created empty at start, removed at shutdown with everything in it.
    package let directory: TemporaryDirectory
    /// The name errors start with: `sh SCRIPT` or `eval`.
    package let displayName: String
    let environment: [String]
    let invocation: Invocation
    let logger: (@Sendable (String) -> Void)?
    private let unloaded = LockedValue(false)

    /// `$tmpdir`'s path.
    package var temporaryDirectory: String { directory.path }

    init(
        directory: TemporaryDirectory, displayName: String, invocation: Invocation,
        logger: (@Sendable (String) -> Void)?
    ) {
        self.directory = directory
        self.displayName = displayName
        self.invocation = invocation
        self.logger = logger
        // The server's environment as it is now, with $tmpdir set (replacing any inherited one).
        environment =
            ProcessInfo.processInfo.environment.filter { $0.key != "tmpdir" }.map { "\($0.key)=\($0.value)" }
            + ["tmpdir=\(directory.path)"]
    }

    /// Whether `method` has a script to run (for eval: its own snippet or a `missing=` one).
    func defines(_ method: String) -> Bool {
        switch invocation {
        case .script: true
        case .snippets(let methods, let missing): methods[method] != nil || missing != nil
        }
    }

    /// Runs `method` with `arguments` and reads its exit status the nbdkit way.
    ///
    /// - Parameters:
    ///   - input: What the method reads on standard input (pwrite's data), or `nil` for nothing.
    ///   - outputLimit: The most standard output accepted; more is an `EIO` error.
    ///   - gate: The thread model's lock, held for the whole run, or `nil`.
    /// - Throws: ``NBDError`` with the errno the script named (`EIO` by default) when it fails or
    ///   is killed by a signal.
    package func call(
        _ method: String, _ arguments: [String] = [], input: UnsafeRawBufferPointer? = nil,
        outputLimit: Int = 1 << 20, gate: ScriptGate? = nil
    ) async throws(NBDError) -> ScriptReply {
        let path: String
        switch invocation {
        case .script(let script):
            path = script
        case .snippets(let methods, let missing):
            // nbdkit's default `missing` is `exit 2`: the answer is known without a process.
            guard let snippet = methods[method] ?? missing else { return .missing }
            path = snippet
        }
        let argv = [path, method] + arguments
        let environment = self.environment
        let data = InputBytes(buffer: input)
        logger?("\(displayName): calling \(method) \(arguments.joined(separator: " "))")
        let result: Result<ScriptRun, NBDError> = await BlockingThread.run {
            let start = { () -> Result<ScriptRun, NBDError> in
                do throws(NBDError) {
                    return .success(
                        try ProcessLauncher.run(
                            path: path, arguments: argv, environment: environment, input: data.buffer,
                            outputLimit: outputLimit))
                } catch {
                    return .failure(error)
                }
            }
            return gate?.run(start) ?? start()
        }
        let run = try result.get()
        let context = "\(displayName): \(method)"
        switch run.termination {
        case .signalled(let signal):
            throw NBDError(.ioError, "\(context): the script was killed by signal \(signal)")
        case .exited(0):
            guard !run.outputOverflowed else {
                throw NBDError(.ioError, "\(context): the script printed more than \(outputLimit) bytes")
            }
            return .ok(run.output)
        case .exited(2):
            return .missing
        case .exited(3):
            return .no
        case .exited:
            throw ScriptFailure.error(errorOutput: run.errorOutput, context: context)
        }
    }

    /// Runs `unload` (errors ignored) and removes the temporary directory. Only the first call
    /// does anything.
    package func shutdown() async {
        let first = unloaded.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        _ = try? await call("unload")
        directory.remove()
    }
}

/// pwrite's data, carried to the thread that runs the script. The caller awaits that thread, so
/// the buffer outlives every use.
struct InputBytes: @unchecked Sendable {
    let buffer: UnsafeRawBufferPointer?
}
