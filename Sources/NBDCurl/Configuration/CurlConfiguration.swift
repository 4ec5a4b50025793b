/// Everything the `curl` backend needs to reach one disk image over HTTP or HTTPS: nbdkit's
/// curl-plugin parameters, with the same defaults and meanings.
///
/// ```swift
/// var configuration = CurlConfiguration(url: "https://images.example.com/fedora.raw")
/// configuration.caInfo = "/etc/pki/my-ca.pem"
/// let provider = try await CurlProvider(configuration: configuration, isReadOnly: true)
/// ```
public struct CurlConfiguration: Sendable {
    /// The URL of the image (`http://` or `https://`).
    public var url: String
    /// The user name for the web server's authentication (`CURLOPT_USERNAME`).
    public var user: String?
    /// The password for the web server's authentication (`CURLOPT_PASSWORD`).
    public var password: String?
    /// Extra request headers, each `Name: value` (`Name:` removes a header libcurl adds,
    /// `Name;` sends one with no value), in every request.
    public var headers: [String]
    /// The `Cookie` request header's value, `name=value; name2=value2`.
    public var cookie: String?
    /// Turns on libcurl's cookie engine, starting from this file's cookies (empty: no file).
    public var cookieFile: String?
    /// Turns on the cookie engine and writes the cookies back to this file when a transfer handle ends.
    public var cookieJar: String?
    /// A shell script whose output lines are request headers, run at start and again every
    /// ``headerScriptRenew`` (instead of ``headers``).
    public var headerScript: String?
    /// How often ``headerScript`` runs again; `nil`: only once.
    public var headerScriptRenew: Duration?
    /// A shell script whose first output line is the `Cookie` header (instead of ``cookie``).
    public var cookieScript: String?
    /// How often ``cookieScript`` runs again; `nil`: only once.
    public var cookieScriptRenew: Duration?
    /// A file of CA certificates to verify the server with, instead of the system's (`CURLOPT_CAINFO`).
    public var caInfo: String?
    /// A directory of CA certificates (`CURLOPT_CAPATH`).
    public var caPath: String?
    /// Whether the server's certificate and host name are verified. `true` by default.
    public var verifiesPeer: Bool
    /// The lowest TLS (or SSL) version to accept, or `nil` for libcurl's default.
    public var sslVersion: CurlTLSVersion?
    /// The TLS 1.2 and older cipher list (`CURLOPT_SSL_CIPHER_LIST`).
    public var sslCipherList: String?
    /// The TLS 1.3 cipher suites (`CURLOPT_TLS13_CIPHERS`).
    public var tls13Ciphers: String?
    /// The limit for each whole request in seconds; 0 is libcurl's default (no limit).
    public var timeoutSeconds: Int
    /// Whether redirects are followed. `true` by default.
    public var followsRedirects: Bool
    /// The proxy (`CURLOPT_PROXY`), such as `http://proxy.example.com:3128`.
    public var proxy: String?
    /// The proxy's user name.
    public var proxyUser: String?
    /// The proxy's password.
    public var proxyPassword: String?
    /// The protocols allowed in the URL and in redirects, comma-separated (`http,https`); `nil`: any.
    public var protocols: String?
    /// The `User-Agent` header; `nil` sends none.
    public var userAgent: String?
    /// Whether TCP keep-alive probes are sent. `false` by default.
    public var tcpKeepAlive: Bool
    /// Whether Nagle's algorithm is off (`TCP_NODELAY`). `true` by default.
    public var tcpNoDelay: Bool
    /// A Unix socket to connect to instead of the URL's host and port.
    public var unixSocketPath: String?
    /// How many transfers (each an HTTP connection kept alive) serve every client connection
    /// together. 4 by default, as in nbdkit 1.34.
    public var connections: Int

    /// A configuration for `url` with nbdkit's defaults.
    public init(url: String) {
        self.url = url
        headers = []
        verifiesPeer = true
        timeoutSeconds = 0
        followsRedirects = true
        tcpKeepAlive = false
        tcpNoDelay = true
        connections = 4
    }
}
