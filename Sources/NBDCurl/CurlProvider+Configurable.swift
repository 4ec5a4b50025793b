import NBDCore

extension CurlProvider: ConfigurableBackendProvider {
    public static var backendName: String { "curl" }
    public static var summary: String {
        "a disk image on a web server, read with HTTP range requests (libcurl, loaded at run time)"
    }
    public static var parameters: [ParameterDescription] {
        let secretForms = "; -: ask on the terminal, +FILE: read from FILE, -FD: read from descriptor FD"
        return [
            ParameterDescription("url", "the image's http:// or https:// URL", required: true),
            ParameterDescription("user", "the user name for the web server"),
            ParameterDescription("password", "the password for the web server" + secretForms),
            ParameterDescription(
                "header", "an extra request header 'Name: value' ('Name:' removes one, 'Name;' sends it empty)",
                repeatable: true),
            ParameterDescription("cookie", "the Cookie header, 'name=value; name2=value2'" + secretForms),
            ParameterDescription("cookiefile", "turn cookie processing on, starting from this file (empty: none)"),
            ParameterDescription("cookiejar", "turn cookie processing on and save the cookies to this file at the end"),
            ParameterDescription(
                "header-script", "a shell script printing request headers, one a line (instead of header=)"),
            ParameterDescription("header-script-renew", "run header-script again after this many seconds"),
            ParameterDescription("cookie-script", "a shell script printing the Cookie header (instead of cookie=)"),
            ParameterDescription("cookie-script-renew", "run cookie-script again after this many seconds"),
            ParameterDescription("cainfo", "a file of CA certificates to verify the server with"),
            ParameterDescription("capath", "a directory of CA certificates"),
            ParameterDescription("sslverify", "false: accept any server certificate and host name", default: "true"),
            ParameterDescription(
                "ssl-version",
                "the lowest version: default, tlsv1, sslv2, sslv3, tlsv1.0, tlsv1.1, tlsv1.2 or tlsv1.3"),
            ParameterDescription("ssl-cipher-list", "the TLS 1.2 cipher list, CIPHER[:CIPHER...]"),
            ParameterDescription("tls13-ciphers", "the TLS 1.3 cipher suites, CIPHER[:CIPHER...]"),
            ParameterDescription("timeout", "the limit for each request in seconds; 0: none", default: "0"),
            ParameterDescription("followlocation", "false: do not follow redirects", default: "true"),
            ParameterDescription("proxy", "the proxy to go through, such as http://proxy:3128"),
            ParameterDescription("proxy-user", "the proxy's user name"),
            ParameterDescription("proxy-password", "the proxy's password" + secretForms),
            ParameterDescription("protocols", "the protocols allowed, also in redirects, such as http,https"),
            ParameterDescription("user-agent", "the User-Agent header (default: none)"),
            ParameterDescription("tcp-keepalive", "true: send TCP keep-alive probes", default: "false"),
            ParameterDescription("tcp-nodelay", "false: turn Nagle's algorithm on", default: "true"),
            ParameterDescription("unix-socket-path", "connect to this Unix socket instead of the URL's host"),
            ParameterDescription(
                "connections", "how many HTTP connections (transfers) serve all clients together", default: "4"),
        ]
    }
    public static var positionalParameter: String? { "url" }
    public static var example: String { "curl https://example.com/disk.img" }

    /// Creates the provider from nbdkit's curl-plugin parameters.
    public init(parameters: ParameterValues, options: BackendOptions) async throws(NBDError) {
        var configuration = CurlConfiguration(
            url: try parameters.required("url", example: "https://example.com/disk.img"))
        configuration.user = parameters["user"]
        configuration.password = try parameters["password"].map { (text) throws(NBDError) in
            try SecretParameter.resolve(text, for: "password")
        }
        configuration.headers = parameters.all("header")
        configuration.cookie = try parameters["cookie"].map { (text) throws(NBDError) in
            try SecretParameter.resolve(text, for: "cookie")
        }
        configuration.cookieFile = parameters["cookiefile"]
        configuration.cookieJar = parameters["cookiejar"]
        configuration.headerScript = try Self.script(parameters, "header-script", excluding: "header")
        configuration.headerScriptRenew = try Self.renewal(parameters, "header-script")
        configuration.cookieScript = try Self.script(parameters, "cookie-script", excluding: "cookie")
        configuration.cookieScriptRenew = try Self.renewal(parameters, "cookie-script")
        configuration.caInfo = parameters["cainfo"]
        configuration.caPath = parameters["capath"]
        configuration.verifiesPeer = try parameters.boolean("sslverify", default: true)
        if let name = parameters["ssl-version"] {
            guard let version = CurlTLSVersion.all.first(where: { $0.name == name.lowercased() }) else {
                throw NBDError(
                    .invalidArgument,
                    "ssl-version=\(name): expected one of \(CurlTLSVersion.all.map(\.name).joined(separator: ", "))")
            }
            configuration.sslVersion = version
        }
        configuration.sslCipherList = parameters["ssl-cipher-list"]
        configuration.tls13Ciphers = parameters["tls13-ciphers"]
        configuration.timeoutSeconds = try parameters.integer("timeout", in: 0...Int(Int32.max)) ?? 0
        configuration.followsRedirects = try parameters.boolean("followlocation", default: true)
        configuration.proxy = parameters["proxy"]
        configuration.proxyUser = parameters["proxy-user"]
        configuration.proxyPassword = try parameters["proxy-password"].map { (text) throws(NBDError) in
            try SecretParameter.resolve(text, for: "proxy-password")
        }
        configuration.protocols = parameters["protocols"]
        configuration.userAgent = parameters["user-agent"]
        configuration.tcpKeepAlive = try parameters.boolean("tcp-keepalive", default: false)
        configuration.tcpNoDelay = try parameters.boolean("tcp-nodelay", default: true)
        configuration.unixSocketPath = parameters["unix-socket-path"]
        configuration.connections = try parameters.integer("connections", in: 1...1024) ?? 4
        try await self.init(configuration: configuration, isReadOnly: options.isReadOnly)
    }

    /// A script parameter, which cannot be combined with the static one it replaces.
    private static func script(_ parameters: ParameterValues, _ key: String, excluding other: String)
        throws(NBDError) -> String?
    {
        guard let script = parameters[key] else { return nil }
        if parameters.contains(other) {
            throw NBDError(
                .invalidArgument, "\(key)= and \(other)= cannot be used together: the script replaces \(other)=")
        }
        return script
    }

    /// `KEY-renew=SECS`, which only means something with `KEY=`.
    private static func renewal(_ parameters: ParameterValues, _ key: String) throws(NBDError) -> Duration? {
        guard let seconds: Int = try parameters.integer("\(key)-renew", in: 1...Int(Int32.max)) else { return nil }
        guard parameters.contains(key) else {
            throw NBDError(.invalidArgument, "\(key)-renew=\(seconds): renews \(key)=, which was not given")
        }
        return .seconds(seconds)
    }
}
