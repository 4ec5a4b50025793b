import Dispatch
import NBDCore
import NBDServeCommand
import NBDServer
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

// nbd-serve: serve a backend behind nbdkit-style filters over NBD. See Documentation/CommandLine.md.

let options: ServeOptions
do {
    options = try ServeOptions.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    printToStandardError("nbd-serve: \(error.message)")
    exit(1)
}
if options.showsHelp {
    do {
        print(try HelpText.usage(backend: options.backend, filters: options.filters), terminator: "")
        exit(0)
    } catch {
        printToStandardError("nbd-serve: \(error.message)")
        exit(1)
    }
}
if options.showsVersion {
    print(HelpText.version)
    exit(0)
}
if options.dumpsConfig {
    // The executable's absolute path, as nbdkit prints its own.
    var path = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let length = readlink("/proc/self/exe", &path, path.count - 1)
    let binary = length > 0 ? String(decoding: path[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    print(DumpText.config(binary: binary), terminator: "")
    exit(0)
}
if options.dumpsBackend {
    do {
        print(try DumpText.backend(options.backend ?? ""), terminator: "")
        exit(0)
    } catch {
        printToStandardError("nbd-serve: \(error.message)")
        exit(1)
    }
}

// --swap: a server whose export is this machine's swap must never wait for its own pages to be
// swapped in (a deadlock); lock everything now and later, before any connection, as nbdkit does.
if options.locksMemory && mlockall(MCL_CURRENT | MCL_FUTURE) != 0 {
    printToStandardError(
        "nbd-serve: --swap: cannot lock the process into memory (mlockall: \(String(cString: strerror(errno)))); run as root or raise the locked-memory limit (ulimit -l)"
    )
    exit(1)
}

// --exit-with-parent follows the process that started us, as it was at startup.
let originalParent = getppid()

// A client that vanishes must not kill the server; sends use MSG_NOSIGNAL as well.
signal(SIGPIPE, SIG_IGN)

var configuration = ServerConfiguration()
// Like nbdkit, no connection cap of our own: as many clients as the file-descriptor limit (raised to
// the hard limit) allows. --filter=limit sets a lower one.
configuration.maximumConnections = ConnectionCapacity.raiseAndDerive()
// Problems an operator must see are printed without -v too, as nbdkit prints its errors; --log
// sends both kinds elsewhere. With --log=null an empty sink, since a nil errorLogger means "to the
// debug logger".
do {
    let sinks = try options.log.sinks(verbose: options.isVerbose, write: printToStandardError)
    configuration.errorLogger = sinks.error
    configuration.logger = sinks.debug
} catch {
    printToStandardError("nbd-serve: \(error.message)")
    exit(1)
}
ServerSettings.configure(&configuration, from: options)
// As nbdkit, a debug flag nothing uses is reported, not refused; nbd-serve has none (-v prints its
// debug messages).
for flag in options.debugFlags {
    printToStandardError("nbd-serve: warning: debug flag -D \(flag.split(separator: "=", maxSplits: 1).first ?? "") was not used")
}

do {
    for warning in try TLSSetup.configure(&configuration, from: options) {
        printToStandardError("nbd-serve: warning: \(warning)")
    }
} catch {
    printToStandardError("nbd-serve: \(error.message)")
    exit(1)
}

// Socket activation (systemd, or libnbd's `[ CMD ]`): the listening sockets come from the parent.
let activatedDescriptors = SocketActivation.descriptors(
    listenPID: getenv("LISTEN_PID").map { String(cString: $0) }, listenFDs: getenv("LISTEN_FDS").map { String(cString: $0) },
    pid: getpid())
if activatedDescriptors != nil {
    do {
        try SocketActivation.check(options)
    } catch {
        printToStandardError("nbd-serve: \(error.message)")
        exit(1)
    }
    for variable in SocketActivation.variables { unsetenv(variable) }
}
// -s: the client is connected on standard input, which must be a socket.
if options.servesStandardInput {
    var info = stat()
    guard fstat(0, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else {
        printToStandardError(
            "nbd-serve: -s serves a client connected on standard input, which must be a socket (as from inetd, socat or libnbd's connect_command); it is not")
        exit(1)
    }
}

let server: NBDServer
let plan: ExportPlan
do {
    plan = try ExportPlan(options)
    let logger = configuration.logger
    server = try await plan.makeServer(configuration: configuration, options: BackendOptions(logger: logger))
} catch {
    printToStandardError("nbd-serve: \(error.message)")
    exit(1)
}

// -U - : a private directory that only this process uses, removed at exit. Nothing to bind with
// -s or socket activation.
let privateDirectory: String?
let address: ListenAddress?
switch options.listen {
case _ where options.servesStandardInput || activatedDescriptors != nil:
    address = nil
    privateDirectory = nil
case .unix(let path):
    address = .unix(path: path)
    privateDirectory = nil
case .tcp(let host, let port):
    address = .tcp(host: host, port: port)
    privateDirectory = nil
case .privateUnix:
    var template = Array("/tmp/nbd-serve.XXXXXX".utf8CString)
    guard let directory = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        printToStandardError(
            "nbd-serve: cannot create a private directory in /tmp: \(String(cString: strerror(errno)))")
        exit(1)
    }
    let path = String(cString: directory)
    privateDirectory = path
    address = .unix(path: path + "/socket")
}

@MainActor func removePrivateDirectory() {
    if let privateDirectory {
        if case .unix(let path)? = address { unlink(path) }
        rmdir(privateDirectory)
    }
}

/// Where clients connect (the first activated socket's address with socket activation); `nil` with -s.
let bound: ListenAddress?
do {
    if let activatedDescriptors {
        var first: ListenAddress?
        for descriptor in activatedDescriptors {
            let adopted = try server.listen(adoptingListeningSocket: descriptor)
            first = first ?? adopted
        }
        bound = first
    } else if let address {
        bound = try server.listen(on: address)
    } else {
        bound = nil
    }
} catch {
    removePrivateDirectory()
    // The stack stopped the server before it listened (exitwhen's event had already happened):
    // as nbdkit, that is a normal exit.
    if error.code == .shutdown {
        await server.shutdown()
        exit(0)
    }
    printToStandardError("nbd-serve: \(error.message)")
    await server.shutdown()
    exit(1)
}

// -P: written once listening, as nbdkit does, and left behind at exit like nbdkit's.
if let pidFile = options.pidFile {
    let text = "\(getpid())\n"
    let descriptor = open(pidFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    let written = descriptor >= 0 ? text.withCString { write(descriptor, $0, strlen($0)) } : -1
    if descriptor >= 0 { close(descriptor) }
    if written != text.utf8.count {
        printToStandardError("nbd-serve: cannot write the pid file \(pidFile): \(String(cString: strerror(errno)))")
        removePrivateDirectory()
        await server.shutdown()
        exit(1)
    }
}

if options.isVerbose || (privateDirectory != nil && options.runCommand == nil && !options.isQuiet) {
    // Without -v the line is printed only for -U - without --run, where the path is otherwise unknown.
    let filters = plan.filters.isEmpty ? "no filters" : "filters " + plan.filters.map(\.name).joined(separator: " → ")
    printToStandardError(
        "nbd-serve: serving the \(plan.backendName) backend (\(filters)\(plan.isReadOnly ? ", read-only" : "")) on \(bound?.uri ?? "standard input")"
    )
}

// --print-uri: on standard output once listening, as nbdkit prints it (with -s there is no URI).
if options.printsURI, let bound {
    // write(2) rather than print: the text must be out before a caller reading it waits for more.
    var text = Array(PrintedURI.text(RunEnvironment.uri(for: bound, tls: configuration.tls, exportName: options.exportName)).utf8)
    _ = text.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
}

let exitSignal = ExitSignal()
// Quietly unless -v, as nbdkit stops: libnbd's tools stop a server they started with SIGTERM every time.
let announcesSignals = options.isVerbose
let signals = SignalHandler(SignalHandler.stopSignals) { number in
    if announcesSignals { printToStandardError("nbd-serve: stopping (signal \(number))") }
    exitSignal.finish(0)
}
let parentWatch = options.exitsWithParent ? ParentWatch.start(exitSignal, parent: originalParent) : nil

/// The pid of the `--run` command while it runs, else 0.
let runningChild = Atomic<pid_t>(0)
// -s refuses --run, so with a command there is always an address.
if let command = options.runCommand, let bound {
    // As nbdkit: under --tls=require the URI says TLS (nbds://, nbds+unix://); the client adds
    // its credentials (tls-certificates=, tls-psk-file=).
    let environment = RunEnvironment.variables(for: bound, tls: configuration.tls, exportName: options.exportName)
    do {
        let pid = try RunCommand.spawn(command, environment: environment)
        runningChild.store(pid, ordering: .releasing)
        RunCommand.wait(for: pid) { status in
            runningChild.store(0, ordering: .releasing)
            exitSignal.finish(status)
        }
    } catch {
        printToStandardError("nbd-serve: \(error.message)")
        exitSignal.finish(1)
    }
}

// -s: serve the one client; its end ends the server, as with nbdkit.
if options.servesStandardInput {
    Task {
        do {
            try await server.serve(connectedSocket: 0)
            exitSignal.finish(0)
        } catch {
            printToStandardError("nbd-serve: \(error)")
            exitSignal.finish(1)
        }
    }
}

// A stack that stops the server itself (exitlast, exitwhen: NBDCore's ServerControl) ends the
// process once the server has finished, as nbdkit_shutdown does.
// With --run the command's end ends the process, as with nbdkit.
if options.runCommand == nil {
    Task {
        await server.run()
        exitSignal.finish(0)
    }
}

let code = await exitSignal.wait()
// Stopped by a signal while the --run command still runs: do not leave it behind.
let child = runningChild.load(ordering: .acquiring)
if child != 0 {
    kill(child, SIGTERM)
}
await server.shutdown()
removePrivateDirectory()
exit(code)
