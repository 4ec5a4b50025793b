import NBDCore

/// The text of `nbd-serve --help` and `--version`, generated from what each backend and filter
/// says about itself (``ServeCatalog``).
package enum HelpText {
    /// The version number, as `--dump-config` and `--dump-plugin` print it.
    package static let versionNumber = "0.2.0-dev"

    /// The version `--version` prints.
    package static let version = "nbd-serve \(versionNumber) (swift-nbd-middleware)"

    /// The usage, backends, filters and their parameters.
    package static var usage: String {
        var text = """
            Usage: nbd-serve [-U PATH | -U - | -p PORT [-i ADDR] | -s] [-r] [-f] [-v] [-q] [--run CMD]
                             [-e EXPORTNAME] [-t THREADS] [--no-sr] [--log=stderr|syslog|null]
                             [-D FLAG=N] [--exit-with-parent] [-P PIDFILE]
                             [--tls=off|on|require] [--tls-certificates=DIR | --tls-psk=FILE]
                             [--tls-verify-peer] [--filter=NAME]... BACKEND [ARG] [KEY=VALUE]...

            Serves BACKEND over NBD, behind the filters given with --filter (the first is the
            outermost, nearest the client). Options may come before or after the backend.

            Options:
              -U PATH        listen on a unix socket at PATH
              -U -           listen on a unix socket in a new private temporary directory
              -p PORT        listen on TCP PORT (default 10809) of 127.0.0.1, or of ADDR with -i
              -i ADDR        the numeric address to listen on with -p
              -s             serve one client connected on standard input (a socket) and exit
                             when it leaves; started with systemd socket activation (LISTEN_PID,
                             LISTEN_FDS), nbd-serve accepts on the sockets it was given
              -r             serve read-only
              -f             stay in the foreground (always the case; accepted for nbdkit compatibility)
              -v             print debug messages on standard error
              -q             print no informational startup line
              -n             use the newstyle protocol (the only one; accepted as nbdkit does)
              --exit-with-parent
                             stop when the process that started nbd-serve exits (checked every second)
              -P PIDFILE     write the process ID to PIDFILE once listening (left behind at exit)
              --run CMD      run CMD with /bin/sh once listening, with $uri (also $nbd), $unixsocket,
                             $port, $exportname and $tls set; stop when it exits and exit with its
                             status
              -e EXPORTNAME  the export name $uri and $exportname name for --run (the server serves
                             every name either way)
              -t THREADS     requests per connection in progress at once (default 16); 1 answers
                             each request before reading the next, in order
              --no-sr        refuse structured replies (clients fall back to simple replies and get
                             no block status)
              --log=stderr|syslog|null
                             where error messages (and -v's debug messages) go (default stderr)
              -D FLAG=N      nbdkit debug flags: accepted and reported as unused
              --swap         lock the process into memory (for an export used as swap here)
              --filter=NAME  add a filter (repeatable)
              --tls=off|on|require
                             offer TLS (on) or insist on it (require): before NBD_OPT_STARTTLS a
                             client learns nothing about the export (default off)
              --tls-certificates=DIR
                             X.509: DIR holds ca-cert.pem, server-cert.pem, server-key.pem and
                             optionally ca-crl.pem (default $HOME/.pki/nbdkit, /etc/pki/nbdkit)
              --tls-psk=FILE pre-shared keys: FILE holds psktool's username:hexkey lines
              --tls-verify-peer
                             clients must present a certificate signed by DIR/ca-cert.pem
              --dump-config  print nbd-serve's KEY=VALUE facts (version, tls=yes, ...) and exit
              --dump-plugin  print KEY=VALUE facts about BACKEND (name, version, thread model, its
                             main parameter) and exit 0, or exit 1 if there is no such backend
              --help         show this text
              --version      show the version

            Each KEY=VALUE goes to the first filter (outermost first) that accepts KEY, otherwise to the
            backend. Sizes take K, M, G, T, P or E suffixes (powers of 1024).

            Backends:

            """
        for backend in ServeCatalog.backends {
            text += "  \(backend.backendName): \(backend.summary)\n"
            text += parameterLines(backend.parameters)
        }
        text += "\nFilters:\n"
        for filter in ServeCatalog.filters {
            text += "  --filter=\(filter.filterName): \(filter.summary)\n"
            text += parameterLines(filter.parameters)
        }
        text += """

            Example:
              nbd-serve -U - --filter=stats memory 1G statsfile=/tmp/stats.txt --run 'nbdinfo "$uri"'

            """
        return text
    }

    private static func parameterLines(_ parameters: [ParameterDescription]) -> String {
        parameters.map { "      \($0.name)=...  \($0.helpText)\n" }.joined()
    }
}
