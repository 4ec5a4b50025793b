import Foundation
import NBDCore
import NBDServeCommand
import NBDServer
import Synchronization
import XCTest

final class CommandLineTests: XCTestCase {
    private func parse(_ line: String) throws -> ServeOptions {
        try ServeOptions.parse(line.split(separator: " ").map(String.init))
    }

    private func assertError(
        _ line: String, contains text: String, file: StaticString = #filePath, line number: UInt = #line
    ) async {
        do {
            let options = try parse(line)
            let server = try await ExportPlan(options).makeServer(configuration: ServerConfiguration())
            await server.shutdown()
            XCTFail("'\(line)' was accepted", file: file, line: number)
        } catch let error as CommandLineError {
            XCTAssertTrue(
                error.message.contains(text), "'\(error.message)' does not mention '\(text)'", file: file, line: number)
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: number)
        }
    }

    func testOptionsMayComeBeforeOrAfterTheBackend() throws {
        let before = try parse("-U /tmp/s -r -v --filter=stats memory 1G statsfile=/tmp/x")
        let after = try parse("memory 1G statsfile=/tmp/x -U /tmp/s --filter stats -r -v")
        XCTAssertEqual(before, after)
        XCTAssertEqual(before.listen, .unix(path: "/tmp/s"))
        XCTAssertTrue(before.isReadOnly)
        XCTAssertTrue(before.isVerbose)
        XCTAssertEqual(before.backend, "memory")
        XCTAssertEqual(before.backendArgument, "1G")
        XCTAssertEqual(before.filters, ["stats"])
        XCTAssertEqual(before.parameters, [ServeOptions.Parameter(key: "statsfile", value: "/tmp/x")])
    }

    func testListenChoices() throws {
        XCTAssertEqual(try parse("-U - memory 1M").listen, .privateUnix)
        XCTAssertEqual(try parse("-p 0 memory 1M").listen, .tcp(host: "127.0.0.1", port: 0))
        XCTAssertEqual(try parse("-p 10810 -i ::1 memory 1M").listen, .tcp(host: "::1", port: 10810))
        XCTAssertEqual(try parse("memory 1M").listen, .tcp(host: "127.0.0.1", port: 10809))
        XCTAssertEqual(try parse("--unix=/tmp/a memory 1M").listen, .unix(path: "/tmp/a"))
    }

    func testFlagsAndRun() throws {
        let options = try ServeOptions.parse(["-f", "-rv", "--run", "nbdinfo \"$uri\"", "memory", "1M"])
        XCTAssertTrue(options.isReadOnly)
        XCTAssertTrue(options.isVerbose)
        XCTAssertEqual(options.runCommand, "nbdinfo \"$uri\"")
        XCTAssertEqual(try ServeOptions.parse(["--run=true", "memory", "1M"]).runCommand, "true")
    }

    func testNbdkitsProcessOptions() async throws {
        let options = try parse("--exit-with-parent -P /tmp/serve.pid -q -n --newstyle memory 1M")
        XCTAssertTrue(options.exitsWithParent)
        XCTAssertEqual(options.pidFile, "/tmp/serve.pid")
        XCTAssertTrue(options.isQuiet)
        XCTAssertEqual(try parse("--pidfile=/a memory 1M").pidFile, "/a")
        XCTAssertEqual(try parse("--pid-file /b memory 1M").pidFile, "/b")
        XCTAssertEqual(try parse("-p 1 --ip-addr=127.0.0.2 memory 1M").listen, .tcp(host: "127.0.0.2", port: 1))
        let combined = try parse("-rqn memory 1M")
        XCTAssertTrue(combined.isReadOnly && combined.isQuiet)
        XCTAssertFalse(try parse("memory 1M").exitsWithParent)
        await assertError("-o memory 1M", contains: "only the newstyle protocol")
        await assertError("memory 1M -P", contains: "needs a value")
    }

    func testNbdkitsServerOptions() async throws {
        XCTAssertEqual(try parse("-e a memory 1M").exportName, "a")
        XCTAssertEqual(try parse("--exportname=b memory 1M").exportName, "b")
        XCTAssertEqual(try parse("--export-name c memory 1M").exportName, "c")
        XCTAssertEqual(try parse("--export=d memory 1M").exportName, "d")
        XCTAssertEqual(try parse("memory 1M").exportName, "")
        XCTAssertEqual(try parse("-t 1 memory 1M").threads, 1)
        XCTAssertEqual(try parse("--threads=8 memory 1M").threads, 8)
        XCTAssertNil(try parse("-t 0 memory 1M").threads, "0 is the default, as with nbdkit")
        XCTAssertNil(try parse("memory 1M").threads)
        XCTAssertTrue(try parse("--swap memory 1M").locksMemory)
        XCTAssertFalse(try parse("memory 1M").locksMemory)
        XCTAssertFalse(try parse("--no-sr memory 1M").offersStructuredReplies)
        XCTAssertTrue(try parse("memory 1M").offersStructuredReplies)
        XCTAssertEqual(try parse("--log=syslog memory 1M").log, .syslog)
        XCTAssertEqual(try parse("--log null memory 1M").log, .null)
        XCTAssertEqual(try parse("memory 1M").log, .standardError)
        XCTAssertEqual(try parse("-D a.b=1 --debug=nbdkit.c=2 memory 1M").debugFlags, ["a.b=1", "nbdkit.c=2"])
        await assertError("-t many memory 1M", contains: "must be a whole number")
        await assertError("-t -2 memory 1M", contains: "must be a whole number")
        await assertError("--log=file memory 1M", contains: "use stderr, syslog, null, default or an absolute path")
        XCTAssertEqual(try parse("--log=/var/log/nbd.log memory 1M").log, .file(path: "/var/log/nbd.log"))
        XCTAssertEqual(try parse("--log=default memory 1M").log, .standardError)
        await assertError("memory 1M -e", contains: "needs a value")
    }

    func testSingleClientOnStandardInputAndSocketActivation() async throws {
        XCTAssertTrue(try parse("-s memory 1M").servesStandardInput)
        XCTAssertTrue(try parse("--single memory 1M").servesStandardInput)
        XCTAssertTrue(try parse("-rs memory 1M").servesStandardInput)
        XCTAssertFalse(try parse("memory 1M").servesStandardInput)
        await assertError("-s -U /tmp/x memory 1M", contains: "leave out -U, -p and -i")
        await assertError("-s --run=true memory 1M", contains: "no socket for --run")

        let pid: Int32 = 4242
        XCTAssertEqual(SocketActivation.descriptors(listenPID: "4242", listenFDs: "1", pid: pid), [3])
        XCTAssertEqual(SocketActivation.descriptors(listenPID: "4242", listenFDs: "2", pid: pid), [3, 4])
        XCTAssertNil(SocketActivation.descriptors(listenPID: "4243", listenFDs: "1", pid: pid), "another process's")
        XCTAssertNil(SocketActivation.descriptors(listenPID: nil, listenFDs: nil, pid: pid))
        XCTAssertNil(SocketActivation.descriptors(listenPID: "4242", listenFDs: "0", pid: pid))
        XCTAssertNil(SocketActivation.descriptors(listenPID: "4242", listenFDs: "x", pid: pid))
        XCTAssertNoThrow(try SocketActivation.check(try parse("memory 1M")))
        for line in ["-U /tmp/x memory 1M", "-p 1 memory 1M", "-i ::1 memory 1M", "-s memory 1M"] {
            XCTAssertThrowsError(try SocketActivation.check(try parse(line)), line) { error in
                XCTAssertTrue("\(error)".contains("socket activation"), "\(error)")
            }
        }
    }

    func testDumpConfigAndDumpPlugin() async throws {
        XCTAssertTrue(try parse("--dump-config").dumpsConfig, "no backend needed")
        let plugin = try parse("memory --dump-plugin")
        XCTAssertTrue(plugin.dumpsBackend)
        let config = DumpText.config(binary: "/usr/bin/nbd-serve")
        XCTAssertTrue(config.hasPrefix("binary=/usr/bin/nbd-serve\n"), config)
        XCTAssertTrue(config.contains("\ntls=yes\n"), config)
        XCTAssertTrue(config.contains("\nversion=\(HelpText.versionNumber)\n"), config)
        let memory = try DumpText.backend("memory")
        XCTAssertTrue(memory.hasPrefix("name=memory\n"), memory)
        XCTAssertTrue(memory.contains("\nthread_model=parallel\n"), memory)
        XCTAssertTrue(memory.contains("\nmagic_config_key=size\n"), memory)
        XCTAssertTrue(try DumpText.backend("nbd").contains("\nmagic_config_key=uri\n"))
        XCTAssertThrowsError(try DumpText.backend("bogus")) { error in
            XCTAssertTrue("\(error)".contains("unknown backend 'bogus'"), "\(error)")
        }
    }

    func testThreadsAndNoSRSetTheServer() throws {
        var configuration = ServerConfiguration()
        ServerSettings.configure(&configuration, from: try parse("memory 1M"))
        XCTAssertEqual(configuration.maximumSlowRequestsPerConnection, ServerConfiguration().maximumSlowRequestsPerConnection)
        XCTAssertFalse(configuration.servesRequestsInOrder)
        XCTAssertTrue(configuration.offersStructuredReplies)

        ServerSettings.configure(&configuration, from: try parse("-t 1 --no-sr memory 1M"))
        XCTAssertTrue(configuration.servesRequestsInOrder, "-t 1 serializes, as nbdkit promises")
        XCTAssertEqual(configuration.maximumSlowRequestsPerConnection, 1)
        XCTAssertFalse(configuration.offersStructuredReplies)

        var other = ServerConfiguration()
        ServerSettings.configure(&other, from: try parse("-t 4 memory 1M"))
        XCTAssertEqual(other.maximumSlowRequestsPerConnection, 4)
        XCTAssertFalse(other.servesRequestsInOrder)
    }

    func testRunVariablesAreNbdkits() {
        let unix = RunEnvironment.variables(for: .unix(path: "/tmp/s"), tls: .off, exportName: "")
        XCTAssertEqual(unix["uri"], "nbd+unix:///?socket=/tmp/s")
        XCTAssertEqual(unix["nbd"], unix["uri"])
        XCTAssertEqual(unix["unixsocket"], "/tmp/s")
        XCTAssertEqual(unix["port"], "")
        XCTAssertEqual(unix["exportname"], "")
        XCTAssertEqual(unix["tls"], .some(nil), "unset with --tls=off")

        let named = RunEnvironment.variables(for: .unix(path: "/tmp/s"), tls: .on, exportName: "a b/c?d%é")
        XCTAssertEqual(named["uri"], "nbd+unix:///a%20b/c%3Fd%25%C3%A9?socket=/tmp/s")
        XCTAssertEqual(named["exportname"], "a b/c?d%é")
        XCTAssertEqual(named["tls"], "1")

        let tcp = RunEnvironment.variables(for: .tcp(host: "127.0.0.1", port: 4000), tls: .require, exportName: "x")
        XCTAssertEqual(tcp["uri"], "nbds://127.0.0.1:4000/x")
        XCTAssertEqual(tcp["port"], "4000")
        XCTAssertEqual(tcp["unixsocket"], "")
        XCTAssertEqual(tcp["tls"], "2")
        XCTAssertEqual(RunEnvironment.uri(for: .tcp(host: "::1", port: 1), tls: .off, exportName: ""), "nbd://[::1]:1")
    }

    func testLogDestinations() throws {
        let lines = LockedValue<[String]>([])
        let standard = try LogDestination.standardError.sinks(verbose: true) { line in
            lines.withLock { $0.append(line) }
        }
        standard.error("message")
        standard.debug?("detail")
        XCTAssertEqual(lines.withLock { $0 }, ["nbd-serve: error: message", "nbd-serve: debug: detail"])
        XCTAssertNil(try LogDestination.standardError.sinks(verbose: false) { _ in }.debug, "debug only with -v")
        let null = try LogDestination.null.sinks(verbose: true) { _ in XCTFail("written") }
        null.error("dropped")
        XCTAssertNil(null.debug)
        XCTAssertNotNil(try LogDestination.syslog.sinks(verbose: true) { _ in XCTFail("written to stderr") }.debug)
    }

    func testLogFileAppendsOneLinePerMessageAndABadPathFailsAtStart() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("log-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("nbd.log").path
        try "earlier\n".write(toFile: path, atomically: true, encoding: .utf8)
        let sinks = try LogDestination.file(path: path).sinks(verbose: true) { _ in XCTFail("written to stderr") }
        sinks.error("refused")
        sinks.debug?("accepted")
        XCTAssertEqual(
            try String(contentsOfFile: path, encoding: .utf8),
            "earlier\nnbd-serve: error: refused\nnbd-serve: debug: accepted\n")
        XCTAssertThrowsError(
            try LogDestination.file(path: directory.appendingPathComponent("missing/nbd.log").path).sinks(verbose: false) { _ in }
        ) { error in
            XCTAssertTrue((error as? CommandLineError)?.message.contains("cannot open the log file") ?? false, "\(error)")
        }
    }

    func testNewerNbdkitServerOptions() async throws {
        let options = try parse("--timeout=2.5s --keepalive --print-uri --no-mc memory 1M")
        XCTAssertEqual(options.negotiationTimeout, .milliseconds(2500))
        XCTAssertTrue(options.enablesKeepAlive)
        XCTAssertTrue(options.printsURI)
        XCTAssertFalse(options.offersMetaContexts)
        XCTAssertFalse(try parse("--no-meta-contexts memory 1M").offersMetaContexts)
        XCTAssertFalse(try parse("--no-structured-replies memory 1M").offersStructuredReplies)
        XCTAssertFalse(try parse("--no-extended-headers memory 1M").offersExtendedHeaders)
        XCTAssertFalse(try parse("--no-eh memory 1M").offersExtendedHeaders)
        XCTAssertTrue(try parse("memory 1M").offersExtendedHeaders)
        var withoutExtended = ServerConfiguration()
        ServerSettings.configure(&withoutExtended, from: try parse("--no-eh memory 1M"))
        XCTAssertFalse(withoutExtended.offersExtendedHeaders)
        XCTAssertEqual(try parse("--timeout 500ms memory 1M").negotiationTimeout, .milliseconds(500))
        let defaults = try parse("memory 1M")
        XCTAssertNil(defaults.negotiationTimeout)
        XCTAssertFalse(defaults.enablesKeepAlive || defaults.printsURI)
        XCTAssertTrue(defaults.offersMetaContexts)
        await assertError("--timeout=soon memory 1M", contains: "--timeout=soon: expected a time such as 30, 2.5s or 500ms")
        await assertError("--timeout=0 memory 1M", contains: "--timeout=0: the time must be longer than zero")

        var configuration = ServerConfiguration()
        ServerSettings.configure(&configuration, from: options)
        XCTAssertEqual(configuration.negotiationTimeout, .milliseconds(2500))
        XCTAssertTrue(configuration.enablesTCPKeepAlive)
        XCTAssertFalse(configuration.offersMetaContexts)
    }

    func testPrintedURIIsQuotedForTheShellAsNbdkitPrintsIt() {
        XCTAssertEqual(PrintedURI.shellQuoted("nbd://127.0.0.1:10809/disk"), "nbd://127.0.0.1:10809/disk")
        XCTAssertEqual(PrintedURI.shellQuoted("nbd+unix:///?socket=/tmp/s"), "\"nbd+unix:///?socket=/tmp/s\"")
        XCTAssertEqual(PrintedURI.shellQuoted("a$b`c\\d\"e"), "\"a\\$b\\`c\\\\d\\\"e\"")
        XCTAssertEqual(PrintedURI.shellQuoted(""), "\"\"")
        XCTAssertEqual(
            PrintedURI.text("nbd://h:1"),
            "nbd://h:1\nShell-quoted URI: nbd://h:1\nCommand to query the NBD endpoint:\n  nbdinfo nbd://h:1\n")
    }

    func testHelpAndVersionNeedNoBackend() throws {
        XCTAssertTrue(try parse("--help").showsHelp)
        XCTAssertTrue(try parse("--version").showsVersion)
    }

    func testSizesUsePowersOf1024() throws {
        XCTAssertEqual(try parseSize("512"), 512)
        XCTAssertEqual(try parseSize("64K"), 64 << 10)
        XCTAssertEqual(try parseSize("64k"), 64 << 10)
        XCTAssertEqual(try parseSize("1M"), 1 << 20)
        XCTAssertEqual(try parseSize("2MiB"), 2 << 20)
        XCTAssertEqual(try parseSize("1G"), 1 << 30)
        XCTAssertEqual(try parseSize("3T"), 3 << 40)
        XCTAssertEqual(try parseSize("1P"), 1 << 50)
        XCTAssertEqual(try parseSize("7E"), 7 << 60)
        XCTAssertThrowsError(try parseSize("8E"), "above 2^63 - 1")
        XCTAssertThrowsError(try parseSize("1X"))
        XCTAssertThrowsError(try parseSize("G"))
        XCTAssertThrowsError(try parseSize("-1"))
        XCTAssertThrowsError(try parseSize("99999999999999999999"))
    }

    func testParametersGoToTheFirstFilterThatDeclaresThemThenToTheBackend() throws {
        let options = try parse(
            "--filter=multi-conn --filter=fua --filter=stats memory size=1G statsfile=/tmp/s multi-conn-mode=emulate fuamode=native statsthreshold=50"
        )
        let plan = try ExportPlan(options)
        XCTAssertEqual(plan.backendName, "memory")
        XCTAssertEqual(plan.backendParameters, ["size": "1G"])
        XCTAssertEqual(plan.filters.map(\.name), ["multi-conn", "fua", "stats"])
        XCTAssertEqual(plan.filters[0].parameters, ["multi-conn-mode": "emulate"])
        XCTAssertEqual(plan.filters[1].parameters, ["fuamode": "native"])
        XCTAssertEqual(plan.filters[2].parameters, ["statsfile": "/tmp/s", "statsthreshold": "50"])
    }

    func testPositionalArgumentsMapToTheBackendsMainParameter() throws {
        XCTAssertEqual(try ExportPlan(parse("memory 1G")).backendParameters, ["size": "1G"])
        XCTAssertEqual(try ExportPlan(parse("file /tmp/disk.img")).backendParameters, ["file": "/tmp/disk.img"])
        let cache = try ExportPlan(parse("connection-cache size=32 init=Hello strictfua=true"))
        XCTAssertEqual(cache.backendParameters, ["size": "32", "init": "Hello", "strictfua": "true"])
    }

    func testTheNbdBackendTakesAURIAsItsPositionalArgumentAndNbdkitsParameters() async throws {
        XCTAssertEqual(try ExportPlan(parse("nbd nbd://localhost/disk")).backendParameters, ["uri": "nbd://localhost/disk"])
        // As nbdkit: an argument whose text before '=' cannot be a parameter name is the plain one.
        XCTAssertEqual(
            try ExportPlan(parse("nbd nbd+unix:///?socket=/tmp/up.sock")).backendParameters,
            ["uri": "nbd+unix:///?socket=/tmp/up.sock"])
        XCTAssertEqual(
            try ExportPlan(parse("nbd nbds+unix:///e?socket=/tmp/up.sock&tls-psk-file=/k shared=true")).backendParameters,
            ["uri": "nbds+unix:///e?socket=/tmp/up.sock&tls-psk-file=/k", "shared": "true"])
        let plan = try ExportPlan(parse("--filter=multi-conn nbd socket=/tmp/up.sock export=e shared=false retry=0"))
        XCTAssertEqual(plan.backendParameters, ["socket": "/tmp/up.sock", "export": "e", "shared": "false", "retry": "0"])
        await assertError("nbd", contains: "socket=PATH")
        await assertError("nbd socket=/tmp/a hostname=b", contains: "only one of")
        await assertError("nbd nbds://localhost/?tls-psk-file=/nonexistent/keys.psk", contains: "tls-psk")
        await assertError("nbd socket=/tmp/a tls=on", contains: "tls")
    }

    func testMakesServersForEachBackend() async throws {
        for line in ["memory 1G", "--filter=multi-conn connection-cache size=32 init=Hi strictfua=yes"] {
            let server = try await ExportPlan(parse(line)).makeServer(configuration: ServerConfiguration())
            await server.shutdown()
        }
    }

    func testCachingFiltersTakeNbdkitsParametersAndNameThemInErrors() async throws {
        for line in [
            "--filter=cache memory 1M cache=writethrough cache-on-read=/nonexistent cache-max-size=2M",
            "--filter=cow memory 1M cow-block-size=128K cow-on-read=true cow-on-cache=true",
            "--filter=readahead --filter=cache memory 1M cache-min-block-size=4K",
        ] {
            let server = try await ExportPlan(parse(line)).makeServer(configuration: ServerConfiguration())
            await server.shutdown()
        }
        await assertError("--filter=cache memory 1M cache=sometimes", contains: "filter 'cache': cache=sometimes")
        await assertError("--filter=cache memory 1M cache-max-size=512K", contains: "cache-max-size")
        await assertError(
            "--filter=cache memory 1M cache-max-size=1G cache-low-threshold=95", contains: "cache-low-threshold")
        await assertError("--filter=cow memory 1M cow-block-size=1000", contains: "filter 'cow': cow-block-size=1000")
        await assertError("memory 1M cow-on-read=true", contains: "add --filter=cow")
    }

    func testAParameterOfAFilterNotGivenNamesThatFilter() async {
        await assertError(
            "memory 1M multi-conn-mode=emulate",
            contains:
                "unknown parameter 'multi-conn-mode' in 'multi-conn-mode=emulate': the memory backend does not take it and no filter is given; it belongs to the multi-conn filter: add --filter=multi-conn"
        )
        await assertError(
            "--filter=stats memory 1M statsfile=/dev/null fuamode=native",
            contains:
                "neither the memory backend nor the filters given (stats) take it; it belongs to the fua filter: add --filter=fua"
        )
        await assertError("memory 1M strictfua=true", contains: "it is a parameter of the connection-cache backend")
    }

    func testBadFilterValuesNameTheParameterAndTheAcceptedValues() async {
        await assertError(
            "--filter=multi-conn memory 1M multi-conn-mode=bogus",
            contains: "filter 'multi-conn': multi-conn-mode=bogus: expected one of auto (the default), emulate, plugin, disable, unsafe")
        await assertError(
            "--filter=multi-conn memory 1M multi-conn-track-dirty=always",
            contains: "multi-conn-track-dirty=always: expected one of connection")
        await assertError(
            "--filter=fua memory 1M fuamode=sometimes",
            contains: "filter 'fua': fuamode=sometimes: expected one of none (the default), emulate, native, force, pass, discard")
        await assertError("--filter=fua memory 1M flush-on-close=maybe", contains: "flush-on-close=maybe: expected a boolean")
        await assertError("--filter=stats memory 1M statsfile=/dev/null statsthreshold=200", contains: "statsthreshold")
        await assertError("--filter=error memory 1M error=EBOGUS", contains: "error=EBOGUS")
        await assertError("connection-cache 1M strictfua=perhaps", contains: "strictfua=perhaps: expected a boolean")
    }

    func testParameterNamesFollowNbdkitsRule() {
        for name in ["size", "tls-psk", "multi-conn-mode", "a.b_c-d", "X9"] {
            XCTAssertTrue(ServeOptions.isParameterName(Substring(name)), name)
        }
        for text in ["", "1size", "-x", "nbd+unix:///?socket", "nbd://h/e?x", "a b", "é"] {
            XCTAssertFalse(ServeOptions.isParameterName(Substring(text)), text)
        }
    }

    func testMistakesAreClearErrors() async {
        await assertError("", contains: "no backend given")
        await assertError("-r", contains: "no backend given")
        await assertError("floppy 1M", contains: "unknown backend 'floppy'")
        await assertError("--filter=floppy memory 1M", contains: "unknown filter 'floppy'")
        await assertError("memory 1M colour=blue", contains: "unknown parameter 'colour'")
        await assertError(
            "--filter=stats memory 1M fuamode=native statsfile=/dev/null", contains: "unknown parameter 'fuamode'")
        await assertError("memory 1M size=2M", contains: "given twice")
        await assertError("memory 1M 2M", contains: "unexpected argument '2M'")
        await assertError("memory 1M 2=3", contains: "unexpected argument '2=3'")
        await assertError("size=1M memory", contains: "before the backend")
        await assertError("--frobnicate memory 1M", contains: "unknown option '--frobnicate'")
        await assertError("memory 1M -U", contains: "needs a value")
        await assertError("-U /tmp/s -p 1 memory 1M", contains: "cannot be combined")
        await assertError("-p 70000 memory 1M", contains: "0 to 65535")
        await assertError("memory", contains: "memory backend: size=... is required, for example size=1G")
        await assertError("memory 1Q", contains: "size suffix")
        await assertError("file", contains: "file backend: file=... is required")
        await assertError("file /nonexistent/dir/disk.img", contains: "file backend")
        await assertError("--filter=multi-conn memory 1M multi-conn-mode=sometimes", contains: "filter 'multi-conn'")
        await assertError("--filter=stats memory 1M", contains: "statsfile")
        await assertError("connection-cache size=4 init=toolong", contains: "connection-cache backend")
    }

    /// `text` with every run of spaces and line breaks made one space: what wrapping does not change.
    private func unwrapped(_ text: String) -> String {
        text.split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
    }

    func testHelpListsBackendsFiltersAndTheirParameters() {
        let help = HelpText.usage
        let flat = unwrapped(help)
        for backend in ServeCatalog.backends {
            XCTAssertTrue(help.contains("\n  \(backend.backendName): "), backend.backendName)
            XCTAssertTrue(flat.contains(unwrapped("\(backend.backendName): \(backend.summary)")), backend.backendName)
            for parameter in backend.parameters {
                XCTAssertTrue(help.contains("\n      \(parameter.name)=...  "), parameter.name)
                XCTAssertTrue(flat.contains(unwrapped("\(parameter.name)=... \(parameter.helpText)")), parameter.name)
            }
        }
        for filter in ServeCatalog.filters {
            XCTAssertTrue(help.contains("\n  --filter=\(filter.filterName): "), filter.filterName)
            XCTAssertTrue(flat.contains(unwrapped("--filter=\(filter.filterName): \(filter.summary)")), filter.filterName)
            for parameter in filter.parameters {
                XCTAssertTrue(flat.contains(unwrapped("\(parameter.name)=... \(parameter.helpText)")), parameter.name)
            }
        }
        XCTAssertTrue(help.contains("\nBackends:\n  memory: "))
        XCTAssertTrue(help.contains("      size=...  the export size, e.g. 1G; suffixes K M G T P E (required)\n"))
        XCTAssertTrue(help.contains("\nFilters:\n  --filter=multi-conn: "))
    }

    func testHelpFitsInAHundredColumnsAndNamesEveryOptionShortAndLong() {
        let help = HelpText.usage
        for line in help.split(separator: "\n") {
            XCTAssertLessThanOrEqual(line.count, HelpText.width, "too wide: \(line)")
        }
        let synopsis = HelpText.synopsis
        for option in [
            "-U|--unix", "-p|--port", "-i|--ipaddr", "-s|--single", "-r|--readonly", "-f|--foreground",
            "-n|--newstyle", "-v|--verbose", "-q|--quiet", "-e|--exportname", "-t|--threads", "--no-sr",
            "--log=", "-D|--debug", "--exit-with-parent", "-P|--pidfile", "--swap", "--run", "--tls=",
            "--tls-certificates=", "--tls-psk=", "--tls-verify-peer", "--filter=NAME", "--dump-config",
            "--dump-plugin", "--help", "--version",
        ] {
            XCTAssertTrue(synopsis.contains(option), "the usage lacks \(option)")
        }
        for option in ["-U, --unix", "-r, --readonly", "-f, --foreground", "-P, --pidfile", "-n, --newstyle"] {
            XCTAssertTrue(help.contains("\n  \(option) "), "the options list lacks \(option)")
        }
    }

    func testHelpWithAFilterOrBackendDescribesOnlyThose() throws {
        let help = try HelpText.usage(backend: "memory", filters: ["delay", "stats"])
        XCTAssertTrue(help.hasPrefix(HelpText.synopsis))
        XCTAssertTrue(help.contains("\nBackends:\n  memory: "))
        XCTAssertTrue(help.contains("\nFilters:\n  --filter=delay: "))
        XCTAssertTrue(help.contains("\n  --filter=stats: "))
        XCTAssertTrue(help.contains("\n      delay-read=...  "))
        XCTAssertFalse(help.contains("--filter=multi-conn:"), "only the named filters")
        XCTAssertFalse(help.contains("  file: "), "only the named backend")
        XCTAssertFalse(help.contains("Options:"), "no option list")
        for line in help.split(separator: "\n") { XCTAssertLessThanOrEqual(line.count, HelpText.width, String(line)) }

        let filterOnly = try HelpText.usage(backend: nil, filters: ["nozero"])
        XCTAssertTrue(filterOnly.contains("\nFilters:\n  --filter=nozero: "))
        XCTAssertFalse(filterOnly.contains("Backends:"))
        XCTAssertEqual(try HelpText.usage(backend: nil, filters: []), HelpText.usage)

        XCTAssertThrowsError(try HelpText.usage(backend: "nosuch", filters: [])) { error in
            XCTAssertTrue((error as? CommandLineError)?.message.contains("unknown backend 'nosuch'") ?? false, "\(error)")
        }
        XCTAssertThrowsError(try HelpText.usage(backend: nil, filters: ["nosuch"])) { error in
            XCTAssertTrue((error as? CommandLineError)?.message.contains("unknown filter 'nosuch'") ?? false, "\(error)")
        }
    }

    func testWrappingBreaksAtSpacesWithinTheWidth() {
        let text = Array(repeating: "word", count: 40).joined(separator: " ")
        let lines = HelpText.wrapped(text, first: "  ", rest: "      ").split(separator: "\n")
        XCTAssertGreaterThan(lines.count, 1)
        XCTAssertTrue(lines.allSatisfy { $0.count <= HelpText.width })
        XCTAssertTrue(lines[0].hasPrefix("  word"))
        XCTAssertTrue(lines.dropFirst().allSatisfy { $0.hasPrefix("      word") })
        XCTAssertEqual(unwrapped(lines.joined(separator: "\n")), text)
        XCTAssertEqual(HelpText.wrapped("short", first: "  ", rest: "    "), "  short\n")
    }

    func testParameterValuesKeepRepeatsAndParseTypes() throws {
        var values: ParameterValues = ["protect": "0-511", "delay-read": "100ms", "retries": "5"]
        values.append("protect", "~1M-2M")
        XCTAssertEqual(values.all("protect"), ["0-511", "~1M-2M"])
        XCTAssertEqual(values["protect"], "~1M-2M")
        XCTAssertEqual(try values.duration("delay-read"), .milliseconds(100))
        XCTAssertEqual(try parseDuration("1.5", for: "d"), .milliseconds(1500))
        XCTAssertEqual(try parseDuration("250us", for: "d"), .microseconds(250))
        XCTAssertThrowsError(try parseDuration("-1", for: "d"))
        XCTAssertThrowsError(try parseDuration("fast", for: "d"))
        XCTAssertEqual(try values.integer("retries", in: 0...100) as Int?, 5)
        XCTAssertThrowsError(try values.integer("retries", in: 0...3) as Int?) { error in
            XCTAssertEqual((error as? NBDError)?.message, "retries=5: expected a whole number from 0 to 3")
        }
        XCTAssertEqual(try values.choice("mode", ["a": 1, "b": 2], default: 3), 3)
        XCTAssertThrowsError(try (["mode": "c"] as ParameterValues).choice("mode", ["a": 1, "b": 2], default: 3)) { error in
            XCTAssertEqual((error as? NBDError)?.message, "mode=c: expected one of a, b")
        }
        XCTAssertThrowsError(try values.required("logfile", example: "/tmp/log")) { error in
            XCTAssertEqual((error as? NBDError)?.message, "logfile=... is required, for example logfile=/tmp/log")
        }
    }
}
