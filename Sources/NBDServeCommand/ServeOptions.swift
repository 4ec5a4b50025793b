import NBDCore
import NBDServer

/// The parsed command line of `nbd-serve`:
///
/// ```
/// nbd-serve [-U PATH | -U - | -p PORT [-i ADDR] | -s] [-r] [-f] [-v] [-q] [-n] [--run CMD]
///           [-e EXPORTNAME] [-t THREADS] [--no-sr] [--no-meta-contexts] [--no-extended-headers]
///           [--log=stderr|syslog|null|/PATH] [-D FLAG=N] [--timeout=T] [--keepalive] [--print-uri]
///           [--memory-budget=SIZE|none]
///           [--exit-with-parent] [-P PIDFILE] [--filter=NAME]...
///           [--tls=off|on|require] [--tls-certificates=DIR | --tls-psk=FILE] [--tls-verify-peer]
///           BACKEND [ARG] [KEY=VALUE]...
/// ```
///
/// Options may stand before or after the backend, as with nbdkit. Parsing checks only the shape of
/// the command line; ``ExportPlan`` checks backends, filters and parameters.
package struct ServeOptions: Sendable, Hashable {
    /// Where to listen.
    package enum Listen: Sendable, Hashable {
        /// `-U PATH`.
        case unix(path: String)
        /// `-U -`: a socket in a new private temporary directory, removed at exit.
        case privateUnix
        /// `-p PORT [-i ADDR]`, or the default `127.0.0.1:10809`.
        case tcp(host: String, port: UInt16)
    }

    /// One `KEY=VALUE` argument, or (with an empty key) a plain argument after the first.
    package struct Parameter: Sendable, Hashable {
        /// The text before the first `=`; empty for a later plain argument.
        package var key: String
        /// The text after the first `=` (may be empty or contain `=`).
        package var value: String
        /// Creates a parameter.
        package init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    /// The default TCP port of NBD.
    package static let defaultPort: UInt16 = 10809

    /// Where to listen: `-U`, `-p`/`-i`, or `127.0.0.1:10809` by default.
    package var listen: Listen = .tcp(host: "127.0.0.1", port: ServeOptions.defaultPort)
    /// Whether `-U`, `-p` or `-i` chose ``listen`` (rather than the default).
    package var listensWhereTold = false
    /// `-s`, `--single`: serve one client on standard input (a connected socket) instead of
    /// listening, and exit when it disconnects.
    package var servesStandardInput = false
    /// `-r`: serve read-only.
    package var isReadOnly = false
    /// `-v`: debug messages on standard error.
    package var isVerbose = false
    /// `--run CMD`: the command to run once the server listens.
    package var runCommand: String?
    /// `--filter=NAME`, outermost first.
    package var filters: [String] = []
    /// The backend name, such as `memory`.
    package var backend: String?
    /// The backend's positional argument (`memory 1G`, `file disk.img`).
    package var backendArgument: String?
    /// Every `KEY=VALUE`, in order.
    package var parameters: [Parameter] = []
    /// `--tls=off|on|require` (nbdkit's meanings; `off` by default).
    package var tls: TLSMode = .off
    /// `--tls-certificates=DIR`: `ca-cert.pem`, `server-cert.pem`, `server-key.pem`, `ca-crl.pem`.
    package var tlsCertificates: String?
    /// `--tls-psk=FILE`: `psktool`'s `username:hexkey` lines.
    package var tlsPSKFile: String?
    /// `--tls-verify-peer`: clients must present a certificate signed by the CA.
    package var tlsVerifyPeer = false
    /// `--exit-with-parent`: stop when the process that started `nbd-serve` exits.
    package var exitsWithParent = false
    /// `-P FILE`, `--pidfile=FILE`: write the process ID to FILE once listening (not removed at exit,
    /// as nbdkit does).
    package var pidFile: String?
    /// `-q`: no informational startup line.
    package var isQuiet = false
    /// `-e NAME`, `--exportname=NAME`: the export name `--run`'s `$exportname` and `$uri` name (the
    /// server itself serves every name, as nbdkit does).
    package var exportName = ""
    /// `-t N`, `--threads=N`: nbdkit's threads per connection; `nil` (or 0) for the default.
    package var threads: Int?
    /// `--no-sr`: refuse structured replies.
    package var offersStructuredReplies = true
    /// `--no-meta-contexts`, `--no-mc`: refuse meta contexts (no block status).
    package var offersMetaContexts = true
    /// `--no-extended-headers`, `--no-eh`: refuse extended headers (clients keep 32-bit lengths).
    package var offersExtendedHeaders = true
    /// `--timeout=T`: the time a client has to finish the handshake (nbdkit's delay format).
    package var negotiationTimeout: Duration?
    /// `--keepalive`: `SO_KEEPALIVE` on TCP connections.
    package var enablesKeepAlive = false
    /// `--memory-budget=SIZE`: the server's payload memory budget in bytes, 0 for none (`none`,
    /// `unlimited`); `nil` when not given (the library's default, a quarter of physical memory).
    package var memoryBudget: Int?
    /// `--print-uri`: print the URI clients connect to once listening.
    package var printsURI = false
    /// `--log=stderr|syslog|null|/PATH`: where error (and, with `-v`, debug) messages go.
    package var log: LogDestination = .standardError
    /// `--swap`: lock the whole process into memory (`mlockall`), for an export used as swap space
    /// on the same machine.
    package var locksMemory = false
    /// `-D NAME=N`, `--debug`: nbdkit debug flags, accepted and reported unused (nbd-serve has none).
    package var debugFlags: [String] = []
    /// `--help`.
    package var showsHelp = false
    /// `--dump-config`: print facts about `nbd-serve` and exit.
    package var dumpsConfig = false
    /// `--dump-plugin`: print facts about the backend and exit (its parameters are not checked).
    package var dumpsBackend = false
    /// `--version`.
    package var showsVersion = false

    /// Creates the options of an empty command line (which ``parse(_:)`` rejects: it names no backend).
    package init() {}

    /// Parses `arguments` (without the program name).
    ///
    /// - Throws: ``CommandLineError`` for an unknown option, a missing option value, a bad port,
    ///   `-U` combined with `-p`/`-i`, a parameter before the backend, a second plain argument, or no
    ///   backend at all (unless `--help` or `--version` was given).
    package static func parse(_ arguments: [String]) throws(CommandLineError) -> ServeOptions {
        var options = ServeOptions()
        var unixPath: String?
        var port: UInt16?
        var address: String?
        var index = 0

        func value(for option: String, inline: String?) throws(CommandLineError) -> String {
            if let inline { return inline }
            index += 1
            guard index < arguments.count else {
                throw CommandLineError("option \(option) needs a value; run 'nbd-serve --help' for the usage")
            }
            return arguments[index]
        }

        var onlyPositional = false
        while index < arguments.count {
            let argument = arguments[index]
            defer { index += 1 }
            if onlyPositional || !argument.hasPrefix("-") || argument == "-" {
                try options.addPositional(argument)
                continue
            }
            if argument == "--" {
                onlyPositional = true
                continue
            }
            // --name=value or --name value; -x value; -xyz for flags.
            var name = argument
            var inline: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inline = String(argument[argument.index(after: equals)...])
            }
            switch name {
            case "-U", "--unix":
                unixPath = try value(for: name, inline: inline)
            case "-p", "--port":
                let text = try value(for: name, inline: inline)
                guard let number = UInt16(text) else {
                    throw CommandLineError("-p \(text): the port must be a number from 0 to 65535")
                }
                port = number
            case "-i", "--ipaddr", "--ip-addr":
                address = try value(for: name, inline: inline)
            case "-r", "--readonly", "--read-only":
                options.isReadOnly = true
            case "-f", "--foreground", "--no-fork":
                break
            case "-n", "--newstyle", "--new-style":
                // The only protocol nbd-serve speaks; nbdkit's default too.
                break
            case "-o", "--oldstyle", "--old-style":
                throw CommandLineError(
                    "\(name): nbd-serve speaks only the newstyle protocol (every current client does); leave the option out")
            case "--exit-with-parent":
                options.exitsWithParent = true
            case "-P", "--pidfile", "--pid-file":
                options.pidFile = try value(for: name, inline: inline)
            case "-q", "--quiet":
                options.isQuiet = true
            case "-s", "--single":
                options.servesStandardInput = true
            case "-e", "--export", "--export-name", "--exportname":
                options.exportName = try value(for: name, inline: inline)
            case "-t", "--threads":
                let text = try value(for: name, inline: inline)
                guard let count = Int(text), count >= 0 else {
                    throw CommandLineError("\(name) \(text): the number of threads must be a whole number (0 for the default)")
                }
                options.threads = count == 0 ? nil : count
            case "--no-sr", "--no-structured-replies":
                options.offersStructuredReplies = false
            case "--no-meta-contexts", "--no-mc":
                options.offersMetaContexts = false
            case "--no-extended-headers", "--no-eh":
                options.offersExtendedHeaders = false
            case "--keepalive":
                options.enablesKeepAlive = true
            case "--print-uri":
                options.printsURI = true
            case "--timeout":
                let text = try value(for: name, inline: inline)
                let timeout: Duration
                do {
                    timeout = try parseDuration(text, for: "--timeout")
                } catch {
                    throw CommandLineError(
                        "--timeout=\(text): expected a time such as 30, 2.5s or 500ms (the limit for a client to finish the handshake)")
                }
                guard timeout > .zero else {
                    throw CommandLineError("--timeout=\(text): the time must be longer than zero")
                }
                options.negotiationTimeout = timeout
            case "--memory-budget":
                let text = try value(for: name, inline: inline)
                if ["none", "unlimited"].contains(text.lowercased()) {
                    options.memoryBudget = 0
                } else {
                    guard let size = try? parseSize(text, for: "--memory-budget"), size <= UInt64(Int.max) else {
                        throw CommandLineError(
                            "--memory-budget=\(text): expected a size such as 512M or 4G, or none for no limit (the memory large reads and writes may take at once)")
                    }
                    options.memoryBudget = Int(size)
                }
            case "--swap":
                options.locksMemory = true
            case "--log":
                let text = try value(for: name, inline: inline)
                options.log = try LogDestination.parse(text)
            case "-D", "--debug":
                options.debugFlags.append(try value(for: name, inline: inline))
            case "-v", "--verbose":
                options.isVerbose = true
            case "--run":
                options.runCommand = try value(for: name, inline: inline)
            case "--filter":
                options.filters.append(try value(for: name, inline: inline))
            case "--tls":
                let text = try value(for: name, inline: inline)
                guard let mode = Self.tlsMode(text) else {
                    throw CommandLineError("--tls=\(text): use off, on or require")
                }
                options.tls = mode
            case "--tls-certificates":
                options.tlsCertificates = try value(for: name, inline: inline)
            case "--tls-psk":
                options.tlsPSKFile = try value(for: name, inline: inline)
            case "--tls-verify-peer":
                options.tlsVerifyPeer = true
            case "-h", "--help":
                options.showsHelp = true
            case "--dump-config":
                options.dumpsConfig = true
            case "--dump-plugin":
                options.dumpsBackend = true
            case "-V", "--version":
                options.showsVersion = true
            default:
                let letters = argument.dropFirst()
                if !argument.hasPrefix("--") && letters.allSatisfy({ "rfvnqs".contains($0) }) {
                    // Combined short flags such as -rv.
                    if letters.contains("r") { options.isReadOnly = true }
                    if letters.contains("v") { options.isVerbose = true }
                    if letters.contains("q") { options.isQuiet = true }
                    if letters.contains("s") { options.servesStandardInput = true }
                    continue
                }
                throw CommandLineError("unknown option '\(argument)'; run 'nbd-serve --help' for the usage")
            }
        }

        if options.showsHelp || options.showsVersion || options.dumpsConfig { return options }
        options.listensWhereTold = unixPath != nil || port != nil || address != nil
        if options.servesStandardInput {
            guard !options.listensWhereTold else {
                throw CommandLineError("-s serves the client on standard input: leave out -U, -p and -i")
            }
            guard options.runCommand == nil else {
                throw CommandLineError("-s serves the client on standard input, so there is no socket for --run's command")
            }
        }
        if let unixPath {
            guard port == nil && address == nil else {
                throw CommandLineError("-U cannot be combined with -p or -i: choose a unix socket or a TCP port")
            }
            options.listen = unixPath == "-" ? .privateUnix : .unix(path: unixPath)
        } else if port != nil || address != nil {
            options.listen = .tcp(host: address ?? "127.0.0.1", port: port ?? defaultPort)
        }
        guard options.backend != nil else {
            throw CommandLineError(
                "no backend given: name one, for example 'nbd-serve -U - memory 1G'; run 'nbd-serve --help' for the list"
            )
        }
        return options
    }

    /// nbdkit's spellings: `off`/`on`/`require`, the boolean words for off and on, and `required`
    /// or `force` for require.
    private static func tlsMode(_ text: String) -> TLSMode? {
        switch text.lowercased() {
        case "off", "no", "false", "0": return .off
        case "on", "yes", "true", "1": return .on
        case "require", "required", "force": return .require
        default: return nil
        }
    }

    /// Whether `text` can name a parameter: an ASCII letter, then ASCII letters, digits, `.`, `_`
    /// and `-` (nbdkit's rule for telling `KEY=VALUE` from a plain argument that contains `=`).
    package static func isParameterName(_ text: Substring) -> Bool {
        guard let first = text.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first | 0x20) else {
            return false
        }
        return text.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }

    private mutating func addPositional(_ argument: String) throws(CommandLineError) {
        if backend == nil {
            guard !argument.contains("=") else {
                throw CommandLineError(
                    "'\(argument)' comes before the backend name: write the backend first, for example 'memory size=1G'"
                )
            }
            backend = argument
            return
        }
        // As nbdkit: KEY=VALUE only when what precedes the first '=' can be a parameter name, so
        // that a plain argument such as nbd+unix:///?socket=PATH stays the backend's main parameter.
        if let equals = argument.firstIndex(of: "="), Self.isParameterName(argument[..<equals]) {
            parameters.append(
                Parameter(key: String(argument[..<equals]), value: String(argument[argument.index(after: equals)...])))
            return
        }
        guard backendArgument == nil && parameters.isEmpty else {
            // nbdkit hands a later plain argument to the plugin under its magic key (the sh
            // plugin's script names one); ExportPlan refuses it for every other backend.
            parameters.append(Parameter(key: "", value: argument))
            return
        }
        backendArgument = argument
    }
}
