import NBDCore

/// The text of `nbd-serve --help` and `--version`, generated from what each backend and filter
/// says about itself (``ServeCatalog``).
package enum HelpText {
    /// The version number, as `--dump-config` and `--dump-plugin` print it.
    package static let versionNumber = "0.2.0-dev"

    /// The version `--version` prints.
    package static let version = "nbd-serve \(versionNumber) (swift-nbd-middleware)"

    /// The widest line `--help` prints.
    package static let width = 100

    /// The synopsis: every option, short and long, and the other ways to run `nbd-serve`.
    package static let synopsis = """
        Usage: nbd-serve [-U|--unix PATH | -U - | -p|--port PORT [-i|--ipaddr ADDR] | -s|--single]
                         [-r|--readonly] [-f|--foreground] [-n|--newstyle] [-v|--verbose] [-q|--quiet]
                         [-e|--exportname EXPORTNAME] [-t|--threads THREADS] [--no-sr]
                         [--no-meta-contexts] [--no-extended-headers] [--timeout=TIME] [--keepalive]
                         [--print-uri]
                         [--memory-budget=SIZE|none]
                         [--log=stderr|syslog|null|/PATH] [-D|--debug FLAG=N] [--exit-with-parent]
                         [-P|--pidfile PIDFILE] [--swap] [--run CMD] [--tls=off|on|require]
                         [--tls-certificates=DIR | --tls-psk=FILE] [--tls-verify-peer]
                         [--filter=NAME]... BACKEND [ARG] [KEY=VALUE]...
               nbd-serve --dump-config
               nbd-serve BACKEND --dump-plugin
               nbd-serve [--filter=NAME]... [BACKEND] --help
               nbd-serve -V|--version

        """

    /// The usage, backends, filters and their parameters: `nbd-serve --help`.
    package static var usage: String {
        var text = synopsis + """

            Serves BACKEND over NBD, behind the filters given with --filter (the first is the
            outermost, nearest the client). Options may come before or after the backend.
            With --filter=NAME or a BACKEND, --help describes only those.

            Options:
              -U, --unix PATH   listen on a unix socket at PATH
              -U -              listen on a unix socket in a new private temporary directory
              -p, --port PORT   listen on TCP PORT (default 10809) of 127.0.0.1, or of ADDR with -i
              -i, --ipaddr ADDR the numeric address to listen on with -p (also --ip-addr)
              -s, --single      serve one client connected on standard input (a socket) and exit when
                                it leaves; started with systemd socket activation (LISTEN_PID,
                                LISTEN_FDS), nbd-serve accepts on the sockets it was given
              -r, --readonly    serve read-only
              -f, --foreground  stay in the foreground (always the case; accepted as nbdkit's)
              -n, --newstyle    use the newstyle protocol (the only one; accepted as nbdkit's)
              -v, --verbose     print debug messages on standard error
              -q, --quiet       print no informational startup line
              --exit-with-parent
                                stop when the process that started nbd-serve exits (checked each
                                second)
              -P, --pidfile PIDFILE
                                write the process ID to PIDFILE once listening (left behind at exit)
              --run CMD         run CMD with /bin/sh once listening, with $uri (also $nbd),
                                $unixsocket, $port, $exportname and $tls set; stop when it exits and
                                exit with its status
              -e, --exportname EXPORTNAME
                                the export name $uri and $exportname name for --run (the server
                                serves every name either way)
              -t, --threads THREADS
                                requests per connection in progress at once (default 16); 1 answers
                                each request before reading the next, in order
              --no-sr           refuse structured replies (clients fall back to simple replies and
                                get no block status)
              --no-meta-contexts
                                refuse meta contexts (clients get no block status; also --no-mc)
              --no-extended-headers
                                refuse NBD extended headers (clients keep 32-bit request lengths, as
                                with nbdkit; also --no-eh)
              --timeout=TIME    drop a client that has not finished the handshake (TLS included)
                                TIME after connecting: 30, 2.5s, 500ms (default: no limit)
              --keepalive       TCP keepalive on client connections, so vanished clients are noticed
              --memory-budget=SIZE|none
                                the most memory large reads and writes (over 64 KiB) may take at
                                once, over all clients: 512M, 4G; past it requests wait for memory
                                to be freed (default: a quarter of physical memory; none: no limit)
              --print-uri       print the URI clients connect to, and an nbdinfo command, once
                                listening
              --log=stderr|syslog|null|/PATH
                                where error messages (and -v's debug messages) go: appended to PATH
                                (absolute) for a file (default stderr)
              -D, --debug FLAG=N
                                nbdkit debug flags: accepted and reported as unused
              --swap            lock the process into memory (for an export used as swap here)
              --filter=NAME     add a filter (repeatable)
              --tls=off|on|require
                                offer TLS (on) or insist on it (require): before NBD_OPT_STARTTLS a
                                client learns nothing about the export (default off)
              --tls-certificates=DIR
                                X.509: DIR holds ca-cert.pem, server-cert.pem, server-key.pem and
                                optionally ca-crl.pem (default $HOME/.pki/nbdkit, /etc/pki/nbdkit)
              --tls-psk=FILE    pre-shared keys: FILE holds psktool's username:hexkey lines
              --tls-verify-peer clients must present a certificate signed by DIR/ca-cert.pem
              --dump-config     print nbd-serve's KEY=VALUE facts (version, tls=yes, ...) and exit
              --dump-plugin     print KEY=VALUE facts about BACKEND (name, version, thread model,
                                its main parameter) and exit 0, or exit 1 if there is no such backend
              -h, --help        show this text
              -V, --version     show the version

            Each KEY=VALUE goes to the first filter (outermost first) that accepts KEY, otherwise to the
            backend. Sizes take K, M, G, T, P or E suffixes (powers of 1024).

            """
        text += section(backends: ServeCatalog.backends, filters: ServeCatalog.filters)
        text += """

            Example:
              nbd-serve -U - --filter=stats memory 1G statsfile=/tmp/stats.txt --run 'nbdinfo "$uri"'

            """
        return text
    }

    /// `nbd-serve [--filter=NAME]... [BACKEND] --help`: the synopsis and only what those filters
    /// and that backend take, as nbdkit prints for `nbdkit --filter=NAME PLUGIN --help`. With
    /// neither, the whole ``usage``.
    ///
    /// - Throws: ``CommandLineError`` naming an unknown backend or filter.
    package static func usage(backend: String?, filters: [String]) throws(CommandLineError) -> String {
        guard backend != nil || !filters.isEmpty else { return usage }
        var backends: [any ConfigurableBackendProvider.Type] = []
        if let backend {
            guard let type = ServeCatalog.backend(named: backend) else { throw ServeCatalog.unknownBackend(backend) }
            backends.append(type)
        }
        var layers: [any ConfigurableFilterLayer.Type] = []
        for name in filters {
            guard let type = ServeCatalog.filter(named: name) else { throw ServeCatalog.unknownFilter(name) }
            layers.append(type)
        }
        return synopsis + "\nRun 'nbd-serve --help' alone for every option, backend and filter.\n\n"
            + section(backends: backends, filters: layers)
    }

    /// The `Backends:` and `Filters:` lists (either left out when empty), each entry with its
    /// parameters, wrapped to ``width``.
    private static func section(
        backends: [any ConfigurableBackendProvider.Type], filters: [any ConfigurableFilterLayer.Type]
    ) -> String {
        var text = ""
        if !backends.isEmpty {
            text += "Backends:\n"
            for backend in backends {
                text += wrapped("\(backend.backendName): \(backend.summary)", first: "  ", rest: "      ")
                text += parameterLines(backend.parameters)
            }
        }
        if !filters.isEmpty {
            text += backends.isEmpty ? "Filters:\n" : "\nFilters:\n"
            for filter in filters {
                text += wrapped("--filter=\(filter.filterName): \(filter.summary)", first: "  ", rest: "      ")
                text += parameterLines(filter.parameters)
            }
        }
        return text
    }

    private static func parameterLines(_ parameters: [ParameterDescription]) -> String {
        parameters.map { wrapped("\($0.name)=...  \($0.helpText)", first: "      ", rest: "          ") }.joined()
    }

    /// `text` broken at spaces into lines of at most ``width`` columns (a word longer than that
    /// stands alone), the first starting with `first` and the rest with `rest`.
    package static func wrapped(_ text: String, first: String, rest: String) -> String {
        var lines: [String] = []
        var line = first
        var lineHasWords = false
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            if lineHasWords && line.count + 1 + word.count > width {
                lines.append(line)
                line = rest + word
            } else {
                line += (lineHasWords ? " " : "") + word
            }
            lineHasWords = true
        }
        lines.append(line)
        return lines.joined(separator: "\n") + "\n"
    }
}
