/// The `CURLOPT_*` numbers NBDCurl sets (libcurl's ABI: the option type's base plus the option's
/// index, stable across libcurl releases), with the names libcurl documents them under.
struct CurlOption: Sendable, Hashable {
    let rawValue: Int32
    let name: String

    private init(_ rawValue: Int32, _ name: String) {
        self.rawValue = rawValue
        self.name = name
    }

    // Base values of the option types: long 0, pointer 10000, function 20000, curl_off_t 30000.
    static let writeData = CurlOption(10001, "CURLOPT_WRITEDATA")
    static let url = CurlOption(10002, "CURLOPT_URL")
    static let proxy = CurlOption(10004, "CURLOPT_PROXY")
    static let range = CurlOption(10007, "CURLOPT_RANGE")
    static let readData = CurlOption(10009, "CURLOPT_READDATA")
    static let errorBuffer = CurlOption(10010, "CURLOPT_ERRORBUFFER")
    static let writeFunction = CurlOption(20011, "CURLOPT_WRITEFUNCTION")
    static let readFunction = CurlOption(20012, "CURLOPT_READFUNCTION")
    static let timeout = CurlOption(13, "CURLOPT_TIMEOUT")
    static let userAgent = CurlOption(10018, "CURLOPT_USERAGENT")
    static let cookie = CurlOption(10022, "CURLOPT_COOKIE")
    static let httpHeader = CurlOption(10023, "CURLOPT_HTTPHEADER")
    static let headerData = CurlOption(10029, "CURLOPT_HEADERDATA")
    static let cookieFile = CurlOption(10031, "CURLOPT_COOKIEFILE")
    static let sslVersion = CurlOption(32, "CURLOPT_SSLVERSION")
    static let verbose = CurlOption(41, "CURLOPT_VERBOSE")
    static let noProgress = CurlOption(43, "CURLOPT_NOPROGRESS")
    static let noBody = CurlOption(44, "CURLOPT_NOBODY")
    static let upload = CurlOption(46, "CURLOPT_UPLOAD")
    static let followLocation = CurlOption(52, "CURLOPT_FOLLOWLOCATION")
    static let sslVerifyPeer = CurlOption(64, "CURLOPT_SSL_VERIFYPEER")
    static let caInfo = CurlOption(10065, "CURLOPT_CAINFO")
    static let headerFunction = CurlOption(20079, "CURLOPT_HEADERFUNCTION")
    static let debugFunction = CurlOption(20094, "CURLOPT_DEBUGFUNCTION")
    static let debugData = CurlOption(10095, "CURLOPT_DEBUGDATA")
    static let httpGet = CurlOption(80, "CURLOPT_HTTPGET")
    static let sslVerifyHost = CurlOption(81, "CURLOPT_SSL_VERIFYHOST")
    static let cookieJar = CurlOption(10082, "CURLOPT_COOKIEJAR")
    static let sslCipherList = CurlOption(10083, "CURLOPT_SSL_CIPHER_LIST")
    static let caPath = CurlOption(10097, "CURLOPT_CAPATH")
    static let bufferSize = CurlOption(98, "CURLOPT_BUFFERSIZE")
    static let noSignal = CurlOption(99, "CURLOPT_NOSIGNAL")
    static let inFileSizeLarge = CurlOption(30115, "CURLOPT_INFILESIZE_LARGE")
    static let tcpNoDelay = CurlOption(121, "CURLOPT_TCP_NODELAY")
    static let username = CurlOption(10173, "CURLOPT_USERNAME")
    static let password = CurlOption(10174, "CURLOPT_PASSWORD")
    static let proxyUsername = CurlOption(10175, "CURLOPT_PROXYUSERNAME")
    static let proxyPassword = CurlOption(10176, "CURLOPT_PROXYPASSWORD")
    static let tcpKeepAlive = CurlOption(213, "CURLOPT_TCP_KEEPALIVE")
    static let unixSocketPath = CurlOption(10231, "CURLOPT_UNIX_SOCKET_PATH")
    static let tls13Ciphers = CurlOption(10276, "CURLOPT_TLS13_CIPHERS")
    static let protocolsString = CurlOption(10318, "CURLOPT_PROTOCOLS_STR")
    static let redirectProtocolsString = CurlOption(10319, "CURLOPT_REDIR_PROTOCOLS_STR")
}

/// The `CURLINFO_*` numbers NBDCurl reads (type base plus index).
enum CurlInfo {
    /// CURLINFO_RESPONSE_CODE: the last response's status (long).
    static let responseCode: Int32 = 0x200000 + 2
    /// CURLINFO_CONTENT_LENGTH_DOWNLOAD_T: the Content-Length, or -1 (curl_off_t).
    static let contentLength: Int32 = 0x600000 + 15
}
