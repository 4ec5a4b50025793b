import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A real nginx (Debian package `nginx`) that a test starts with a configuration of its own, in a
/// temporary directory (`daemon off`, its own pid file, logs and temporary paths), listening on
/// 127.0.0.1 on free ports and on a Unix socket. It serves:
///
/// - `/disk.img`: ``image``, random bytes (not a multiple of 4096 long), over HTTP, and with
///   `https: true` over HTTPS too (a certificate for 127.0.0.1 and localhost signed by a CA made
///   at test time, ``caFile``);
/// - `/private/disk.img`: the same, behind basic authentication (``user``/``password``);
/// - `/noranges/disk.img`: the same, with `max_ranges 0` (ranges ignored: status 200);
/// - `/token/disk.img`: the same, only with the request header `X-Token: abc` or the cookie
///   `token=abc` (otherwise 403);
/// - `/cookies/disk.img`: the same, answered with `Set-Cookie: session=xyz`;
/// - `/slow/disk.img`: the same, sent at 512 bytes a second after the first 1 KiB (for timeouts);
/// - `/redirect/disk.img`: a 302 to `/disk.img`;
/// - `/missing/...`: 404; `/broken/...`: 500.
///
/// On ``proxyPort`` it is a forward proxy to itself that wants `Proxy-Authorization` for
/// ``user``/``password`` (otherwise 407).
///
/// Stop it with ``stop()``; tests register that as a teardown block so nginx ends even when the
/// test fails. It is stopped by its process id, never by name.
public final class TestNginx: @unchecked Sendable {
    // @unchecked Sendable: `process` is only replaced by start()/stop(), which a test calls from
    // one task at a time.
    /// The directory holding the configuration, logs and the served files.
    public let root: URL
    /// The bytes of every `disk.img`.
    public let image: [UInt8]
    /// The HTTP and HTTPS ports on 127.0.0.1.
    public let httpPort: Int
    public let httpsPort: Int
    /// The forward proxy's port on 127.0.0.1.
    public let proxyPort: Int
    /// The Unix socket nginx also serves plain HTTP on.
    public var unixSocket: String { root.appendingPathComponent("nginx.sock").path }
    /// The CA certificate that signed nginx's certificate (with `https: true`).
    public var caFile: String { (credentials?.serverDirectory ?? "/nonexistent") + "/ca-cert.pem" }
    /// The basic-authentication user and password of `/private/`.
    public static let user = "alice"
    public static let password = "wonderland"

    private let credentials: TestTLSCredentials?
    private var process: Process?

    /// Whether the nginx binary is installed.
    public static let executable = "/usr/sbin/nginx"

    /// Starts nginx serving `imageSize` random bytes. Skips the test when nginx (or certtool) is
    /// missing, unless `NBD_INTEROP=required`, where it fails.
    public static func start(
        imageSize: Int = (4 << 20) + 1536, https: Bool = false, file: StaticString = #filePath, line: UInt = #line
    ) throws -> TestNginx {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            let message = "nginx is not installed (Debian package nginx); run .ci/run or apt-get install nginx"
            if ProcessInfo.processInfo.environment["NBD_INTEROP"] == "required" {
                XCTFail("NBD_INTEROP=required but \(message)", file: file, line: line)
            }
            throw XCTSkip(message)
        }
        let credentials = https ? try TestTLSCredentials.make(file: file, line: line) : nil
        var generator = SeededGenerator(seed: UInt64.random(in: 0...UInt64.max))
        var image = [UInt8](repeating: 0, count: imageSize)
        image.withUnsafeMutableBytes { bytes in
            for index in stride(from: 0, to: imageSize, by: 8) {
                withUnsafeBytes(of: generator.next()) { word in
                    let count = min(8, imageSize - index)
                    bytes.baseAddress!.advanced(by: index).copyMemory(from: word.baseAddress!, byteCount: count)
                }
            }
        }
        let ports = try freePorts(3)
        let nginx = try TestNginx(
            credentials: credentials, image: image, httpPort: ports[0], httpsPort: ports[1], proxyPort: ports[2])
        try nginx.start()
        return nginx
    }

    private init(credentials: TestTLSCredentials?, image: [UInt8], httpPort: Int, httpsPort: Int, proxyPort: Int)
        throws
    {
        self.credentials = credentials
        self.image = image
        self.httpPort = httpPort
        self.httpsPort = httpsPort
        self.proxyPort = proxyPort
        root = FileManager.default.temporaryDirectory.appendingPathComponent("nbd-nginx-\(UUID().uuidString)")
        let fileManager = FileManager.default
        for directory in ["www", "www/private", "www/noranges", "www/token", "www/cookies", "www/slow", "tmp", "logs"] {
            try fileManager.createDirectory(
                at: root.appendingPathComponent(directory), withIntermediateDirectories: true)
        }
        // nginx's worker may run as another user: everything it reads must be readable by all.
        chmod(root.path, 0o755)
        for file in [
            "www/disk.img", "www/private/disk.img", "www/noranges/disk.img", "www/token/disk.img",
            "www/cookies/disk.img", "www/slow/disk.img",
        ] {
            try Data(image).write(to: root.appendingPathComponent(file))
        }
        try "\(Self.user):{PLAIN}\(Self.password)\n".write(
            to: root.appendingPathComponent("htpasswd"), atomically: true, encoding: .utf8)
        try configuration.write(to: root.appendingPathComponent("nginx.conf"), atomically: true, encoding: .utf8)
    }

    /// The URL of `path` over HTTP (or HTTPS).
    public func url(_ path: String = "/disk.img", https: Bool = false) -> String {
        https ? "https://localhost:\(httpsPort)\(path)" : "http://127.0.0.1:\(httpPort)\(path)"
    }

    /// The access log so far (one line a request: `connection-number "request" status bytes "user agent"`).
    public var accessLog: [String] {
        let text = (try? String(contentsOf: root.appendingPathComponent("logs/access.log"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init)
    }

    /// Replaces `/PATH`'s file (under www) with `bytes`.
    public func replaceFile(_ path: String, with bytes: [UInt8]) throws {
        try Data(bytes).write(to: root.appendingPathComponent("www" + path))
    }

    /// Removes `/PATH`'s file.
    public func removeFile(_ path: String) throws {
        try FileManager.default.removeItem(at: root.appendingPathComponent("www" + path))
    }

    private var proxyCredentials: String {
        Data("\(Self.user):\(Self.password)".utf8).base64EncodedString()
    }

    private var configuration: String {
        let directory = root.path
        let tls =
            credentials.map {
                """
                listen 127.0.0.1:\(httpsPort) ssl;
                        ssl_certificate \($0.serverDirectory)/server-cert.pem;
                        ssl_certificate_key \($0.serverDirectory)/server-key.pem;
                """
            } ?? ""
        return """
            daemon off;
            worker_processes 1;
            pid \(directory)/nginx.pid;
            error_log \(directory)/logs/error.log;
            events { worker_connections 256; }
            http {
                log_format nbd '$connection "$request" $status $body_bytes_sent "$http_user_agent"';
                access_log \(directory)/logs/access.log nbd;
                default_type application/octet-stream;
                client_body_temp_path \(directory)/tmp/body;
                proxy_temp_path \(directory)/tmp/proxy;
                fastcgi_temp_path \(directory)/tmp/fastcgi;
                uwsgi_temp_path \(directory)/tmp/uwsgi;
                scgi_temp_path \(directory)/tmp/scgi;
                keepalive_requests 100000;
                server {
                    listen 127.0.0.1:\(httpPort);
                    listen unix:\(directory)/nginx.sock;
                    server_name localhost;
                    \(tls)
                    root \(directory)/www;
                    location /private/ {
                        auth_basic "nbd tests";
                        auth_basic_user_file \(directory)/htpasswd;
                    }
                    location /noranges/ { max_ranges 0; }
                    location /token/ {
                        set $allowed "";
                        if ($http_x_token = "abc") { set $allowed "yes"; }
                        if ($cookie_token = "abc") { set $allowed "yes"; }
                        if ($allowed != "yes") { return 403; }
                    }
                    location /cookies/ { add_header Set-Cookie "session=xyz; Path=/"; }
                    location /slow/ { limit_rate_after 1k; limit_rate 512; }
                    location /redirect/ { return 302 /disk.img; }
                    location /missing/ { return 404; }
                    location /broken/ { return 500; }
                }
                server {
                    listen 127.0.0.1:\(proxyPort);
                    location / {
                        if ($http_proxy_authorization != "Basic \(proxyCredentials)") { return 407; }
                        proxy_pass http://127.0.0.1:\(httpPort);
                    }
                }
            }
            """
    }

    /// The command that starts this nginx in the foreground (for a script that restarts it).
    public var commandLine: [String] {
        [
            Self.executable, "-p", root.path, "-e", root.appendingPathComponent("logs/error.log").path, "-c",
            configurationFile,
        ]
    }

    /// The pid file nginx's master process writes.
    public var pidFile: String { root.appendingPathComponent("nginx.pid").path }

    private var configurationFile: String { root.appendingPathComponent("nginx.conf").path }

    /// Starts nginx and waits (bounded) until it accepts connections on the HTTP port.
    public func start(file: StaticString = #filePath, line: UInt = #line) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = Array(commandLine.dropFirst())
        let output = root.appendingPathComponent("logs/output.log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? handle.close()
        self.process = process
        // nginx says nothing when it is ready: wait, bounded, until every port accepts connections
        // and the Unix socket exists (or it exited). It binds one address after another and
        // retries one that is busy half a second later, so one port listening says nothing of
        // the others.
        let deadline = ContinuousClock.now + TestWait.limit
        let ports = [httpPort, proxyPort] + (credentials == nil ? [] : [httpsPort])
        while !(ports.allSatisfy(Self.accepts(port:)) && FileManager.default.fileExists(atPath: unixSocket)) {
            guard process.isRunning, ContinuousClock.now < deadline else {
                let log = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
                stop()
                XCTFail("nginx did not start listening on 127.0.0.1 ports \(ports): \(log)", file: file, line: line)
                throw XCTSkip("failed: nginx did not start")
            }
            usleep(2000)
        }
    }

    /// Stops nginx (SIGTERM to its master process, by process id) and waits for it, bounded
    /// (then SIGKILL). Safe to call twice.
    public func stop() {
        defer { stopRestartedMaster() }
        guard let process, process.isRunning else {
            self.process = nil
            return
        }
        let pid = process.processIdentifier
        let exited = DispatchSemaphore(value: 0)
        Thread {
            process.waitUntilExit()
            exited.signal()
        }.start()
        kill(pid, SIGTERM)
        if exited.wait(timeout: TestWait.deadline) == .timedOut {
            kill(pid, SIGKILL)
            exited.wait()
        }
        // The worker leaves with its master on SIGTERM; nothing else of ours is left behind.
        self.process = nil
    }

    /// Ends an nginx that a test's script started again with ``commandLine`` and left running: the
    /// process named in ``pidFile``, if it is still this configuration's nginx (by its command line).
    private func stopRestartedMaster() {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
            let commandLine = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
            commandLine.contains(configurationFile)
        else { return }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + TestWait.limit
        while kill(pid, 0) == 0, ContinuousClock.now < deadline { usleep(2000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
    }

    /// Stops nginx and removes every file.
    public func remove() {
        stop()
        credentials?.remove()
        try? FileManager.default.removeItem(at: root)
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    private static func accepts(port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        return address
    }

    /// `count` distinct TCP ports free on 127.0.0.1 now (bound to port 0 together, then released).
    public static func freePorts(_ count: Int) throws -> [Int] {
        var descriptors: [Int32] = []
        defer { for descriptor in descriptors { close(descriptor) } }
        var ports: [Int] = []
        for _ in 0..<count {
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard descriptor >= 0 else { throw XCTSkip("socket() failed") }
            descriptors.append(descriptor)
            var address = loopback(port: 0)
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0
                }
            }
            guard bound else { throw XCTSkip("cannot bind a free port on 127.0.0.1") }
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
        }
        return ports
    }
}
