import Foundation
import NBDCore
import Synchronization

/// nbdkit's `header-script=` and `cookie-script=`: shell scripts whose output becomes request
/// headers or the cookie, run the first time a transfer needs them and again once their renewal
/// period has passed since they last ran. Every transfer handle asks for the current output
/// before each request and installs it when it changed (``Output/generation``).
package final class CurlScripts: Sendable {
    /// What the scripts printed last.
    package struct Output: Sendable {
        /// Bumped each time a script ran again.
        package var generation = 0
        /// The header script's non-empty lines.
        package var headers: [String] = []
        /// The cookie script's first line.
        package var cookie: String?
    }

    private struct Script {
        var text: String
        var renew: Duration?
        var iteration = 0
        var lastRun: ContinuousClock.Instant?

        func isDue(_ now: ContinuousClock.Instant) -> Bool {
            guard let lastRun else { return true }
            guard let renew else { return false }
            return now - lastRun >= renew
        }
    }

    private struct State {
        var header: Script?
        var cookie: Script?
        var output = Output()
    }

    private let url: String
    private let state: LockedValue<State>

    /// Scripts for `url` (each `nil` when not given).
    package init(
        url: String, headerScript: String?, headerRenew: Duration?, cookieScript: String?, cookieRenew: Duration?
    ) {
        self.url = url
        state = LockedValue(
            State(
                header: headerScript.map { Script(text: $0, renew: headerRenew) },
                cookie: cookieScript.map { Script(text: $0, renew: cookieRenew) }))
    }

    /// The scripts' current output, running those that are due first (under the lock, so one
    /// transfer runs a script while the others wait for its output).
    package func current() throws(NBDError) -> Output {
        try state.withLock { (state) throws(NBDError) -> Output in
            let now = ContinuousClock.now
            if var script = state.header, script.isDue(now) {
                let text = try run(&script, name: "header-script")
                state.header = script
                state.output.headers = text.split(whereSeparator: \.isNewline).map(String.init).filter {
                    !$0.isEmpty
                }
                state.output.generation += 1
            }
            if var script = state.cookie, script.isDue(now) {
                let text = try run(&script, name: "cookie-script")
                state.cookie = script
                state.output.cookie = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
                state.output.generation += 1
            }
            return state.output
        }
    }

    /// Runs `script` with /bin/sh, with `$iteration` and `$url` set, and returns what it printed.
    private func run(_ script: inout Script, name: String) throws(NBDError) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script.text]
        var environment = ProcessInfo.processInfo.environment
        environment["iteration"] = String(script.iteration)
        environment["url"] = url
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw NBDError(.ioError, "curl: \(name): cannot run /bin/sh: \(error)")
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        script.iteration += 1
        script.lastRun = ContinuousClock.now
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw NBDError(.ioError, "curl: \(name) failed with status \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
