import Foundation
import NBDCore
import NBDCurl
import NBDTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The `curl` backend against a real nginx started by each test (``TestNginx``).
final class CurlProviderTests: XCTestCase {
    private var nginx: TestNginx!

    override func setUp() async throws {
        // Only the HTTPS tests pay for making certificates.
        let nginx = try TestNginx.start(https: name.contains("HTTPS"))
        self.nginx = nginx
        addTeardownBlock { nginx.remove() }
    }

    /// A provider from nbd-serve-style parameters; every request is bounded by libcurl's timeout
    /// so that a broken server fails the test instead of hanging it.
    private func provider(_ parameters: [(String, String)], readOnly: Bool = false) async throws(NBDError)
        -> CurlProvider
    {
        var values = ParameterValues(parameters.map { ParameterValues.Entry(key: $0.0, value: $0.1) })
        if !values.contains("timeout") { values.append("timeout", "20") }
        return try await CurlProvider(parameters: values, options: BackendOptions(isReadOnly: readOnly))
    }

    private func refusal(_ parameters: [(String, String)]) async -> NBDError? {
        do {
            let provider = try await provider(parameters)
            await provider.shutdown()
            XCTFail("expected \(parameters) to be refused")
            return nil
        } catch {
            return error
        }
    }

    private func assertReads(_ backend: CurlBackend, _ ranges: [(offset: Int, count: Int)], of image: [UInt8])
        async throws
    {
        for range in ranges {
            let bytes = try await backend.readBytes(range.count, at: UInt64(range.offset))
            XCTAssertEqual(bytes, Array(image[range.offset..<range.offset + range.count]), "read at \(range.offset)")
        }
    }

    // MARK: Reading

    func testSizeAndRandomReadsMatchTheImageServedOverHTTP() async throws {
        let provider = try await provider([("url", nginx.url())])
        let backend = try await provider.open(ConnectionInfo())
        let image = nginx.image
        XCTAssertEqual(backend.capabilities.size, UInt64(image.count))
        var generator = SeededGenerator(seed: 19)
        var ranges = (0..<50).map { _ in
            (offset: Int.random(in: 0..<(image.count / 4096), using: &generator) * 4096, count: 4096)
        }
        ranges += [(0, 1), (image.count - 1, 1), (image.count - 1536, 1536), (12345, 1 << 20), (0, image.count)]
        try await assertReads(backend, ranges, of: image)
        await provider.shutdown()
    }

    func testLargeReadsAreReceivedInPiecesLargerThanLibcurlsDefault16KiBBuffer() async throws {
        let provider = try await provider([("url", nginx.url()), ("connections", "1")])
        try await provider.observeReceives()
        let backend = try await provider.open(ConnectionInfo())
        let image = nginx.image
        let count = min(image.count, 4 << 20)
        try await assertReads(backend, [(0, count)], of: image)
        // libcurl receives into its buffer, never more than it holds at once: with the default
        // 16 KiB, a 4 MiB body takes 256 receives (and polls) of 16 KiB at most. nginx sends the
        // file over loopback far faster than one 16 KiB piece at a time.
        let largest = try await provider.largestReceive()
        XCTAssertGreaterThan(largest, 16 << 10, "CURLOPT_BUFFERSIZE is not in effect")
        XCTAssertLessThanOrEqual(largest, 256 << 10)
        await backend.close()
        await provider.shutdown()
    }

    func testCapabilitiesAreNbdkitsWithMultiConnAndReadOnlyWithR() async throws {
        let provider = try await provider([("url", nginx.url())])
        let writable = try await provider.open(ConnectionInfo()).capabilities
        XCTAssertTrue(writable.isWritable)
        XCTAssertFalse(writable.canFlush)
        XCTAssertFalse(writable.canTrim)
        XCTAssertEqual(writable.fua, .none)
        XCTAssertTrue(writable.canMultiConn)
        XCTAssertTrue(writable.suspendingOperations.contains(.read))
        XCTAssertTrue(writable.slowOperations.isEmpty)
        await provider.shutdown()

        let readOnly = try await self.provider([("url", nginx.url())], readOnly: true)
        let readOnlyCapabilities = try await readOnly.open(ConnectionInfo()).capabilities
        XCTAssertFalse(readOnlyCapabilities.isWritable)
        await readOnly.shutdown()
    }

    func testConcurrentReadsFromManyConnectionsShareTheKeptAliveTransfers() async throws {
        let provider = try await provider([("url", nginx.url()), ("connections", "2")])
        let image = nginx.image
        let backends = [try await provider.open(ConnectionInfo()), try await provider.open(ConnectionInfo())]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<64 {
                let backend = backends[index % 2]
                let offset = (index * 37 % 1000) * 4096
                group.addTask {
                    let bytes = try await backend.readBytes(4096, at: UInt64(offset))
                    XCTAssertEqual(bytes, Array(image[offset..<offset + 4096]), "read at \(offset)")
                }
            }
            try await group.waitForAll()
        }
        await provider.shutdown()
        // Every request went over one of the two transfers' connections, kept alive. nginx logs a
        // request after answering it: wait (bounded) for the 64 lines.
        await waitUntil("nginx to log 64 reads") {
            self.nginx.accessLog.filter { $0.contains("\"GET /disk.img") && $0.contains(" 206 4096 ") }.count == 64
        }
        let connections = Set(nginx.accessLog.map { $0.split(separator: " ")[0] })
        XCTAssertLessThanOrEqual(connections.count, 2, "\(nginx.accessLog)")
        // No handle served two requests at once.
        XCTAssertLessThanOrEqual(provider.mostConcurrentTransfers, 2)
    }

    /// The threads of this process whose name starts with "curl transfer".
    private func transferThreads() -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.filter { task in
            let name = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
            return name.hasPrefix("curl transfer")
        }.count
    }

    func testOneThreadDrivesEveryTransferAtOnce() async throws {
        // Threads of earlier tests' providers may still be ending; they only go away.
        let before = transferThreads()
        let provider = try await provider([("url", nginx.url("/slow/disk.img")), ("connections", "3")])
        let backend = try await provider.open(ConnectionInfo())
        let image = nginx.image
        // Past its first KiB, /slow/ sends 512 bytes a second: each read stays in flight for
        // about two seconds, so the three overlap.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<3 {
                let offset = index * 65536
                group.addTask {
                    let bytes = try await backend.readBytes(2048, at: UInt64(offset))
                    XCTAssertEqual(bytes, Array(image[offset..<offset + 2048]), "read at \(offset)")
                }
            }
            await waitUntil("three transfers to run at once") { provider.runningTransfers == 3 }
            // One multi handle's thread drives all three (there used to be a thread per handle).
            let during = self.transferThreads()
            XCTAssertGreaterThanOrEqual(during, 1, "no thread named curl transfers")
            XCTAssertLessThanOrEqual(during, before + 1)
            try await group.waitForAll()
        }
        XCTAssertEqual(provider.mostConcurrentTransfers, 3)
        await backend.close()
        await provider.shutdown()
    }

    func testTheTransferThreadResumesRequestsItselfOnlyWhileOneClientIsServed() async throws {
        let provider = try await provider([("url", nginx.url())])
        XCTAssertTrue(provider.resumesRequestsInline)
        let first = try await provider.open(ConnectionInfo())
        XCTAssertTrue(provider.resumesRequestsInline)
        let second = try await provider.open(ConnectionInfo())
        XCTAssertFalse(provider.resumesRequestsInline, "a client that stops reading would hold a shared transfer")
        XCTAssertFalse(provider.resumesRequestsInline(bytes: 4096))
        try await assertReads(second, [(0, 4096)], of: nginx.image)
        await second.close()
        XCTAssertTrue(provider.resumesRequestsInline)
        // With one client: small replies on the transfer thread, large ones (qemu-img convert's
        // 2 MiB) to the server's pool, so that no other transfer waits while the client reads one.
        XCTAssertTrue(provider.resumesRequestsInline(bytes: 4096))
        XCTAssertTrue(provider.resumesRequestsInline(bytes: 256 << 10))
        XCTAssertFalse(provider.resumesRequestsInline(bytes: 2 << 20))
        try await assertReads(first, [(4096, 4096)], of: nginx.image)
        await first.close()
        await provider.shutdown()
    }

    // MARK: HTTPS

    func testHTTPSVerifiesTheServerWithCAInfo() async throws {
        let provider = try await provider([
            ("url", nginx.url(https: true)), ("cainfo", nginx.caFile), ("ssl-version", "tlsv1.2"),
        ])
        try await assertReads(try await provider.open(ConnectionInfo()), [(8192, 4096)], of: nginx.image)
        await provider.shutdown()
    }

    func testHTTPSWithACAPathDirectoryAndCipherSettings() async throws {
        // capath= wants OpenSSL's hashed names: `openssl rehash` makes them.
        let caDirectory = nginx.root.appendingPathComponent("ca")
        try FileManager.default.createDirectory(at: caDirectory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: nginx.caFile, toPath: caDirectory.appendingPathComponent("ca.pem").path)
        let rehash = Process()
        rehash.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        rehash.arguments = ["rehash", caDirectory.path]
        try XCTSkipUnless(
            FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"),
            "openssl is not installed (Debian package openssl)")
        try rehash.run()
        rehash.waitUntilExit()
        let provider = try await provider([
            ("url", nginx.url(https: true)), ("capath", caDirectory.path),
            ("tls13-ciphers", "TLS_AES_128_GCM_SHA256"), ("tcp-keepalive", "true"), ("tcp-nodelay", "false"),
        ])
        try await assertReads(try await provider.open(ConnectionInfo()), [(0, 4096)], of: nginx.image)
        await provider.shutdown()
        let error = await refusal([
            ("url", nginx.url(https: true)), ("cainfo", nginx.caFile), ("ssl-version", "tlsv1.2"),
            ("ssl-cipher-list", "NO-SUCH-CIPHER"),
        ])
        XCTAssertNotNil(error)
    }

    func testHTTPSWithAnUnknownCAIsRefusedUnlessSSLVerifyIsFalse() async throws {
        let error = await refusal([("url", nginx.url(https: true)), ("cainfo", "/dev/null")])
        XCTAssertTrue(error?.message.contains(nginx.url(https: true)) ?? false, "\(String(describing: error))")

        let provider = try await provider([("url", nginx.url(https: true)), ("sslverify", "false")])
        try await assertReads(try await provider.open(ConnectionInfo()), [(4096, 4096)], of: nginx.image)
        await provider.shutdown()
    }

    // MARK: Authentication, headers, cookies

    func testBasicAuthWithThePasswordFromAFileOrADescriptor() async throws {
        let passwordFile = nginx.root.appendingPathComponent("password").path
        try "\(TestNginx.password)\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        let url = nginx.url("/private/disk.img")
        let fromFile = try await provider([("url", url), ("user", TestNginx.user), ("password", "+" + passwordFile)])
        try await assertReads(try await fromFile.open(ConnectionInfo()), [(0, 4096)], of: nginx.image)
        await fromFile.shutdown()

        var descriptors: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&descriptors), 0)
        _ = TestNginx.password.withCString { write(descriptors[1], $0, strlen($0)) }
        close(descriptors[1])
        let fromDescriptor = try await provider([
            ("url", url), ("user", TestNginx.user), ("password", "-\(descriptors[0])"),
        ])
        try await assertReads(try await fromDescriptor.open(ConnectionInfo()), [(4096, 4096)], of: nginx.image)
        await fromDescriptor.shutdown()
    }

    func testAWrongPasswordIsRefusedWithTheStatus() async throws {
        let url = nginx.url("/private/disk.img")
        let error = await refusal([("url", url), ("user", TestNginx.user), ("password", "wrong")])
        XCTAssertEqual(error?.code, .notPermitted)
        XCTAssertTrue(
            error?.message.contains("\(url): the server answered HTTP status 401") ?? false,
            "\(String(describing: error))")
    }

    func testPasswordPromptWithoutATerminalIsRefused() async throws {
        try XCTSkipIf(isatty(0) == 1, "standard input is a terminal: the prompt would wait for a person")
        let error = await refusal([("url", nginx.url()), ("password", "-")])
        XCTAssertEqual(error?.code, .invalidArgument)
        XCTAssertTrue(error?.message.contains("not a terminal") ?? false, "\(String(describing: error))")
    }

    func testHeadersCookiesAndTheirScriptsReachTheServer() async throws {
        let url = nginx.url("/token/disk.img")
        let refused = await refusal([("url", url)])
        XCTAssertTrue(refused?.message.contains("status 403") ?? false, "\(String(describing: refused))")
        for parameters in [
            [("header", "X-Token: abc"), ("header", "X-Other: 1"), ("user-agent", "nbd-tests/1")],
            [("cookie", "token=abc")],
            [("header-script", "echo 'X-Token: abc'")],
            [("cookie-script", "printf 'token=abc\\n'"), ("cookie-script-renew", "60")],
        ] {
            let provider = try await provider([("url", url)] + parameters)
            try await assertReads(try await provider.open(ConnectionInfo()), [(4096, 100)], of: nginx.image)
            await provider.shutdown()
        }
        await waitUntil("nginx to log the user agent") {
            self.nginx.accessLog.contains { $0.hasSuffix("\"nbd-tests/1\"") }
        }
    }

    func testCookieFileIsSentAndCookieJarIsWrittenAtShutdown() async throws {
        // Netscape cookie-file format: domain, subdomains, path, secure, expiry, name, value.
        let cookieFile = nginx.root.appendingPathComponent("cookies.txt").path
        try "127.0.0.1\tFALSE\t/\tFALSE\t0\ttoken\tabc\n".write(toFile: cookieFile, atomically: true, encoding: .utf8)
        let fromFile = try await provider([("url", nginx.url("/token/disk.img")), ("cookiefile", cookieFile)])
        try await assertReads(try await fromFile.open(ConnectionInfo()), [(0, 4096)], of: nginx.image)
        await fromFile.shutdown()

        let jar = nginx.root.appendingPathComponent("jar.txt").path
        let saving = try await provider([
            ("url", nginx.url("/cookies/disk.img")), ("cookiejar", jar), ("connections", "1"),
        ])
        try await assertReads(try await saving.open(ConnectionInfo()), [(0, 4096)], of: nginx.image)
        await saving.shutdown()
        let saved = try String(contentsOfFile: jar, encoding: .utf8)
        XCTAssertTrue(saved.contains("session\txyz"), saved)
    }

    func testAProxyWithProxyUserAndPassword() async throws {
        // Nothing listens on the URL's own port: only the proxy can answer.
        let port = try TestNginx.freePorts(1)[0]
        let url = "http://127.0.0.1:\(port)/disk.img"
        let proxy = "http://127.0.0.1:\(nginx.proxyPort)"
        let provider = try await provider([
            ("url", url), ("proxy", proxy), ("proxy-user", TestNginx.user), ("proxy-password", TestNginx.password),
        ])
        try await assertReads(try await provider.open(ConnectionInfo()), [(4096, 4096)], of: nginx.image)
        await provider.shutdown()
        let error = await refusal([("url", url), ("proxy", proxy)])
        XCTAssertTrue(error?.message.contains("status 407") ?? false, "\(String(describing: error))")
    }

    func testAFailingHeaderScriptIsRefusedAtStart() async throws {
        let error = await refusal([("url", nginx.url()), ("header-script", "exit 3")])
        XCTAssertTrue(
            error?.message.contains("header-script failed with status 3") ?? false, "\(String(describing: error))")
    }

    // MARK: Refusals at start

    func testMissingAndBrokenURLsAreRefusedNamingTheURLAndStatus() async throws {
        for (path, status) in [("/missing/disk.img", 404), ("/broken/disk.img", 500)] {
            let error = await refusal([("url", nginx.url(path))])
            XCTAssertTrue(
                error?.message.contains("\(nginx.url(path)): the server answered HTTP status \(status)") ?? false,
                "\(String(describing: error))")
        }
    }

    func testAServerThatIgnoresRangesIsRefused() async throws {
        let error = await refusal([("url", nginx.url("/noranges/disk.img"))])
        XCTAssertEqual(error?.code, .notSupported)
        XCTAssertTrue(
            error?.message.contains("does not honour range requests") ?? false, "\(String(describing: error))")
    }

    func testUnreachableServerIsRefused() async throws {
        let port = try TestNginx.freePorts(1)[0]
        let error = await refusal([("url", "http://127.0.0.1:\(port)/disk.img")])
        XCTAssertEqual(error?.code, .ioError)
        XCTAssertTrue(error?.message.contains("127.0.0.1:\(port)") ?? false, "\(String(describing: error))")
    }

    func testRedirectsAreFollowedUnlessFollowLocationIsFalse() async throws {
        let url = nginx.url("/redirect/disk.img")
        let provider = try await provider([("url", url)])
        XCTAssertEqual(provider.size, UInt64(nginx.image.count))
        try await assertReads(try await provider.open(ConnectionInfo()), [(0, 512)], of: nginx.image)
        await provider.shutdown()
        let error = await refusal([("url", url), ("followlocation", "false")])
        XCTAssertTrue(error?.message.contains("status 302") ?? false, "\(String(describing: error))")
    }

    func testUnixSocketPathReplacesTheHost() async throws {
        let provider = try await provider([
            ("url", "http://localhost/disk.img"), ("unix-socket-path", nginx.unixSocket),
        ])
        try await assertReads(try await provider.open(ConnectionInfo()), [(65536, 4096)], of: nginx.image)
        await provider.shutdown()
    }

    func testParametersThatCannotWorkAreRefused() async throws {
        let url = nginx.url()
        let cases: [([(String, String)], String)] = [
            ([("url", url), ("protocols", "https")], "not supported or disabled"),
            ([("url", url), ("protocols", "gopher-plus")], "protocols"),
            ([("url", url), ("header", "A: b"), ("header-script", "true")], "cannot be used together"),
            ([("url", url), ("cookie", "a=b"), ("cookie-script", "true")], "cannot be used together"),
            ([("url", url), ("header-script-renew", "5")], "was not given"),
            ([("url", url), ("ssl-version", "tlsv9")], "expected one of"),
            ([("url", url), ("connections", "0")], "connections=0"),
            ([("url", url), ("timeout", "soon")], "timeout=soon"),
            ([("url", "ftp://127.0.0.1/disk.img")], "only http:// and https://"),
            ([("url", url), ("password", "+/nonexistent/password")], "/nonexistent/password"),
        ]
        for (parameters, expected) in cases {
            let error = await refusal(parameters)
            XCTAssertTrue(error?.message.contains(expected) ?? false, "\(parameters): \(String(describing: error))")
        }
    }

    func testMissingLibcurlNamesTheDebianPackage() {
        XCTAssertThrowsError(try LibCurl(path: "/nonexistent/libcurl.so.4")) { error in
            XCTAssertTrue("\(error)".contains("libcurl4"), "\(error)")
        }
    }

    // MARK: Faults while serving

    func testErrorStatusWhileServingIsEIOAndLaterRequestsWork() async throws {
        let provider = try await provider([("url", nginx.url())])
        let backend = try await provider.open(ConnectionInfo())
        try nginx.removeFile("/disk.img")
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.readBytes(4096, at: 0) }, code: .ioError)
        XCTAssertTrue(error?.message.contains("HTTP status 404") ?? false, "\(String(describing: error))")
        try nginx.replaceFile("/disk.img", with: nginx.image)
        try await assertReads(backend, [(0, 4096)], of: nginx.image)
        await provider.shutdown()
    }

    func testAShortResponseIsEIONeverShortData() async throws {
        let provider = try await provider([("url", nginx.url())])
        let backend = try await provider.open(ConnectionInfo())
        // The image shrinks under the server: the last range comes back shorter than asked.
        try nginx.replaceFile("/disk.img", with: Array(nginx.image.prefix(nginx.image.count - 1000)))
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.readBytes(4096, at: UInt64(self.nginx.image.count - 4096))
            }, code: .ioError)
        XCTAssertTrue(error?.message.contains("not the 4096 asked for") ?? false, "\(String(describing: error))")
        await provider.shutdown()
    }

    func testWebServerStoppedAndRestartedWhileServing() async throws {
        let provider = try await provider([("url", nginx.url()), ("connections", "1")])
        let backend = try await provider.open(ConnectionInfo())
        try await assertReads(backend, [(0, 4096)], of: nginx.image)
        nginx.stop()
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.readBytes(4096, at: 4096) }, code: .ioError)
        XCTAssertTrue(
            error?.message.contains("GET \(nginx.url()) bytes=4096-8191") ?? false, "\(String(describing: error))")
        try nginx.start()
        try await assertReads(backend, [(4096, 4096), (1 << 20, 65536)], of: nginx.image)
        await provider.shutdown()
    }

    func testAServerThatStallsFailsTheRequestWithinTimeout() async throws {
        // The start-up requests fit in the first 1 KiB; a 64 KiB read would take two minutes.
        let provider = try await provider([("url", nginx.url("/slow/disk.img")), ("timeout", "1")])
        let backend = try await provider.open(ConnectionInfo())
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.readBytes(65536, at: 0) }, code: .ioError)
        XCTAssertTrue(error?.message.contains("imed out") ?? false, "\(String(describing: error))")
        await provider.shutdown()
    }

    // MARK: Writes

    func testWritesArePUTsWithAContentRangeAndAnErrorStatusIsEIO() async throws {
        let provider = try await provider([("url", nginx.url())])
        let backend = try await provider.open(ConnectionInfo())
        let error = await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.writeBytes([UInt8](repeating: 7, count: 4096), at: 8192) },
            code: .ioError)
        XCTAssertTrue(
            error?.message.contains("PUT \(nginx.url()) bytes 8192-12287: HTTP status 405") ?? false,
            "\(String(describing: error))")
        // nginx logs a request after answering it: wait (bounded) for the line.
        await waitUntil("nginx to log the PUT") {
            self.nginx.accessLog.contains { $0.contains("\"PUT /disk.img HTTP/1.1\" 405") }
        }
        // The export is unchanged and the transfer still reads.
        try await assertReads(backend, [(8192, 4096)], of: nginx.image)
        await provider.shutdown()
    }
}
