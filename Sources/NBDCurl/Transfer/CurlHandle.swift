import CCurlShim
import NBDCore

/// One libcurl easy handle, configured once from a ``CurlConfiguration`` and then used for one
/// request after another by the transfer loop's thread (``CurlTransferPool``). The multi handle
/// it is added to keeps the connections alive between requests, so a stream of reads costs one
/// TCP (and TLS) handshake per connection.
///
/// A request comes in two halves: a `start` method sets the handle up for it (and returns the
/// second half), the pool adds the handle to its multi handle, and once libcurl reports the
/// transfer done the second half checks what came back, given libcurl's result code.
final class CurlHandle {
    /// The second half of a request: checks the response, given the transfer's `CURLcode`.
    typealias Finish<Value> = (Int32) throws(NBDError) -> Value

    /// The easy handle, for the pool's multi handle.
    var easyHandle: UnsafeMutableRawPointer { handle }
    private let curl: LibCurl
    private let handle: UnsafeMutableRawPointer
    private let configuration: CurlConfiguration
    private let scripts: CurlScripts?
    private let state = TransferState()
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: 256)
    /// Where the first-byte probe's body goes (it outlives the call that starts the request).
    private let probeByte = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
    /// The request headers in use (static ones plus a script's), freed when replaced.
    private var headerList: OpaquePointer?
    private var scriptGeneration = -1

    /// Creates and configures a handle.
    ///
    /// - Throws: `NBDError` naming the parameter libcurl refused (an unknown protocol name, a
    ///   TLS version the TLS library lacks).
    init(curl: LibCurl, configuration: CurlConfiguration, scripts: CurlScripts?) throws(NBDError) {
        guard let handle = curl.easyInit() else { throw NBDError(.outOfMemory, "curl: curl_easy_init failed") }
        self.curl = curl
        self.handle = handle
        self.configuration = configuration
        self.scripts = scripts
        errorBuffer.initialize(repeating: 0, count: 256)
        try configure()
    }

    deinit {
        // Cleanup writes the cookie jar, if any.
        curl.easyCleanup(handle)
        if let headerList { curl.slistFreeAll(headerList) }
        errorBuffer.deallocate()
        probeByte.deallocate()
    }

    /// The `CURLOPT_BUFFERSIZE` every handle uses (bytes).
    static let receiveBufferSize = 256 << 10

    /// The largest piece libcurl has received from the socket at once since
    /// ``observeReceives()``.
    var largestReceive: Int { state.largestReceive }

    /// Has libcurl report what it receives (`CURLOPT_VERBOSE` with a debug callback that records
    /// the largest piece of incoming data, and prints nothing): a test's view of the receive
    /// buffer size, which libcurl's body callback does not show (it hands the body over in
    /// pieces of at most 16 KiB whatever the buffer).
    func observeReceives() throws(NBDError) {
        let context = Unmanaged.passUnretained(state).toOpaque()
        try check(curl.setopt(handle, .debugData, pointer: context), .debugData, parameter: "(internal)")
        try check(
            curl.setopt(handle, .debugFunction, debugCallback: recordReceive), .debugFunction,
            parameter: "(internal)")
        try set(.verbose, 1, parameter: "(internal)")
    }

    // MARK: Configuration

    private func set(_ option: CurlOption, _ value: Int, parameter: String) throws(NBDError) {
        try check(curl.setopt(handle, option, long: value), option, parameter: parameter)
    }

    private func set(_ option: CurlOption, _ value: String?, parameter: String) throws(NBDError) {
        // libcurl copies string options, so the C string need only live for the call.
        let status =
            if let value {
                value.withCString { curl.setopt(handle, option, pointer: $0) }
            } else {
                curl.setopt(handle, option, pointer: nil)
            }
        try check(status, option, parameter: parameter)
    }

    private func check(_ status: Int32, _ option: CurlOption, parameter: String) throws(NBDError) {
        guard status != 0 else { return }
        throw NBDError(
            .invalidArgument, "curl: \(parameter): libcurl refused \(option.name): \(curl.message(status))")
    }

    private func configure() throws(NBDError) {
        let settings = configuration
        // Signals are no way to time out in a threaded process.
        try set(.noSignal, 1, parameter: "(internal)")
        // libcurl receives into a buffer of this size and hands the body over from it: its
        // default 16 KiB costs a receive and a poll per 16 KiB, about 15 % of the server's CPU
        // in a `qemu-img convert` (2 MiB reads). 1 MiB did no better than 256 KiB
        // (Documentation/Curl.md, "The receive buffer").
        try set(.bufferSize, Self.receiveBufferSize, parameter: "(internal)")
        try set(.url, settings.url, parameter: "url")
        try set(.followLocation, settings.followsRedirects ? 1 : 0, parameter: "followlocation")
        if let user = settings.user { try set(.username, user, parameter: "user") }
        if let password = settings.password { try set(.password, password, parameter: "password") }
        if let cookie = settings.cookie { try set(.cookie, cookie, parameter: "cookie") }
        if let file = settings.cookieFile { try set(.cookieFile, file, parameter: "cookiefile") }
        if let jar = settings.cookieJar { try set(.cookieJar, jar, parameter: "cookiejar") }
        if let caInfo = settings.caInfo { try set(.caInfo, caInfo, parameter: "cainfo") }
        if let caPath = settings.caPath { try set(.caPath, caPath, parameter: "capath") }
        if !settings.verifiesPeer {
            try set(.sslVerifyPeer, 0, parameter: "sslverify")
            try set(.sslVerifyHost, 0, parameter: "sslverify")
        }
        if let version = settings.sslVersion { try set(.sslVersion, version.curlValue, parameter: "ssl-version") }
        if let list = settings.sslCipherList { try set(.sslCipherList, list, parameter: "ssl-cipher-list") }
        if let list = settings.tls13Ciphers { try set(.tls13Ciphers, list, parameter: "tls13-ciphers") }
        if settings.timeoutSeconds > 0 { try set(.timeout, settings.timeoutSeconds, parameter: "timeout") }
        if let proxy = settings.proxy { try set(.proxy, proxy, parameter: "proxy") }
        if let user = settings.proxyUser { try set(.proxyUsername, user, parameter: "proxy-user") }
        if let password = settings.proxyPassword { try set(.proxyPassword, password, parameter: "proxy-password") }
        if let protocols = settings.protocols {
            try set(.protocolsString, protocols, parameter: "protocols")
            try set(.redirectProtocolsString, protocols, parameter: "protocols")
        }
        if let agent = settings.userAgent { try set(.userAgent, agent, parameter: "user-agent") }
        try set(.tcpKeepAlive, settings.tcpKeepAlive ? 1 : 0, parameter: "tcp-keepalive")
        try set(.tcpNoDelay, settings.tcpNoDelay ? 1 : 0, parameter: "tcp-nodelay")
        if let path = settings.unixSocketPath { try set(.unixSocketPath, path, parameter: "unix-socket-path") }
        try installHeaders(settings.headers, extra: nil)

        let context = Unmanaged.passUnretained(state).toOpaque()
        try check(curl.setopt(handle, .errorBuffer, pointer: errorBuffer), .errorBuffer, parameter: "(internal)")
        try check(curl.setopt(handle, .writeFunction, callback: receiveBody), .writeFunction, parameter: "(internal)")
        try check(curl.setopt(handle, .writeData, pointer: context), .writeData, parameter: "(internal)")
        try check(
            curl.setopt(handle, .headerFunction, callback: receiveHeader), .headerFunction, parameter: "(internal)")
        try check(curl.setopt(handle, .headerData, pointer: context), .headerData, parameter: "(internal)")
        try check(curl.setopt(handle, .readFunction, callback: sendBody), .readFunction, parameter: "(internal)")
        try check(curl.setopt(handle, .readData, pointer: context), .readData, parameter: "(internal)")
    }

    /// Replaces the request headers with `headers` (and `extra`, for one request).
    private func installHeaders(_ headers: [String], extra: String?) throws(NBDError) {
        var list: OpaquePointer?
        for header in headers + (extra.map { [$0] } ?? []) {
            guard let appended = header.withCString({ curl.slistAppend(list, $0) }) else {
                curl.slistFreeAll(list)
                throw NBDError(.outOfMemory, "curl: cannot build the request headers")
            }
            list = appended
        }
        try check(
            curl.setopt(handle, .httpHeader, pointer: list.map { UnsafeRawPointer($0) }), .httpHeader,
            parameter: "header")
        if let headerList { curl.slistFreeAll(headerList) }
        headerList = list
    }

    /// Installs the scripts' newest headers and cookie before a request.
    private func refreshScripts() throws(NBDError) {
        guard let scripts else { return }
        let output = try scripts.current()
        guard output.generation != scriptGeneration else { return }
        if configuration.headerScript != nil { try installHeaders(output.headers, extra: nil) }
        if configuration.cookieScript != nil { try set(.cookie, output.cookie, parameter: "cookie-script") }
        scriptGeneration = output.generation
    }

    private var currentHeaders: [String] {
        configuration.headerScript != nil ? (try? scripts?.current().headers) ?? [] : configuration.headers
    }

    // MARK: Requests

    /// Clears what the last request left in the error buffer.
    private func beginTransfer() {
        errorBuffer[0] = 0
    }

    /// libcurl's error for `code`, preferring the detailed message in the error buffer.
    private func failure(_ code: Int32) -> String {
        let detail = String(cString: errorBuffer)
        return detail.isEmpty ? curl.message(code) : detail
    }

    /// The response's status: the one parsed from the status line, else libcurl's.
    private var responseStatus: Int {
        state.status != 0 ? state.status : curl.getinfoLong(handle, CurlInfo.responseCode) ?? 0
    }

    /// What a `HEAD` request learned.
    struct HeadResult {
        var status: Int
        var contentLength: Int64?
        var acceptsByteRanges: Bool
    }

    /// Sets up a `HEAD` request.
    func startHead() throws(NBDError) -> Finish<HeadResult> {
        try refreshScripts()
        state.reset(destination: nil, expectedStatus: 200)
        try set(.range, nil as String?, parameter: "(internal)")
        try set(.noBody, 1, parameter: "(internal)")
        beginTransfer()
        return { (code) throws(NBDError) in try self.finishHead(code) }
    }

    private func finishHead(_ code: Int32) throws(NBDError) -> HeadResult {
        guard code == 0 else {
            throw NBDError(.ioError, "curl: HEAD \(configuration.url) failed: \(failure(code))")
        }
        let length = curl.getinfoOffset(handle, CurlInfo.contentLength) ?? -1
        return HeadResult(
            status: responseStatus, contentLength: length >= 0 ? length : nil,
            acceptsByteRanges: state.acceptRanges?.lowercased().contains("bytes") ?? false)
    }

    /// What a `Range: bytes=0-0` request learned.
    enum RangeProbe {
        /// 206 with `Content-Range: bytes 0-0/SIZE` (or 416 with `bytes */0` for an empty file).
        case size(UInt64)
        /// The server sent the whole resource (status 200): it ignores ranges.
        case rangesIgnored
        /// Another status.
        case status(Int)
    }

    /// Sets up a request for the first byte, to learn whether ranges are honoured and the
    /// complete length.
    func startProbeFirstByte() throws(NBDError) -> Finish<RangeProbe> {
        try refreshScripts()
        state.reset(destination: probeByte, expectedStatus: 206)
        try set(.httpGet, 1, parameter: "(internal)")
        try set(.range, "0-0", parameter: "(internal)")
        beginTransfer()
        return { (code) throws(NBDError) in try self.finishProbeFirstByte(code) }
    }

    private func finishProbeFirstByte(_ code: Int32) throws(NBDError) -> RangeProbe {
        let status = responseStatus
        if status == 200 { return .rangesIgnored }
        if status == 416, let total = Self.completeLength(state.contentRange), total == 0 { return .size(0) }
        if code != 0 && status == 0 {
            throw NBDError(.ioError, "curl: GET \(configuration.url) failed: \(failure(code))")
        }
        guard status == 206 else { return .status(status) }
        guard let total = Self.completeLength(state.contentRange) else {
            throw NBDError(
                .ioError,
                "curl: \(configuration.url) answered a range request without the image size (Content-Range: \(state.contentRange ?? "none"))"
            )
        }
        return .size(total)
    }

    /// The complete length in a `Content-Range: bytes A-B/LENGTH` or `bytes */LENGTH` value.
    static func completeLength(_ value: String?) -> UInt64? {
        guard let value, let slash = value.lastIndex(of: "/") else { return nil }
        return UInt64(value[value.index(after: slash)...].trimmingPrefix(" "))
    }

    /// The first and last byte in a `Content-Range: bytes A-B/LENGTH` value.
    static func byteRange(_ value: String?) -> (first: UInt64, last: UInt64)? {
        guard let value, value.lowercased().hasPrefix("bytes ") else { return nil }
        let spec = value.dropFirst(6).prefix { $0 != "/" }
        let bounds = spec.split(separator: "-")
        guard bounds.count == 2, let first = UInt64(bounds[0]), let last = UInt64(bounds[1]) else { return nil }
        return (first, last)
    }

    /// Sets up a read of `buffer.count` bytes at `offset` with one range request. Anything but
    /// exactly those bytes with status 206 is an `EIO`. The buffer must stay valid until the
    /// returned second half has run.
    func startRead(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(NBDError) -> Finish<Void> {
        try refreshScripts()
        let last = offset + UInt64(buffer.count) - 1
        state.reset(destination: buffer, expectedStatus: 206)
        try set(.httpGet, 1, parameter: "(internal)")
        try set(.range, "\(offset)-\(last)", parameter: "(internal)")
        beginTransfer()
        return { (code) throws(NBDError) in try self.finishRead(code, count: buffer.count, at: offset) }
    }

    private func finishRead(_ code: Int32, count: Int, at offset: UInt64) throws(NBDError) {
        let last = offset + UInt64(count) - 1
        // Only an error needs the request described.
        var what: String { "GET \(configuration.url) bytes=\(offset)-\(last)" }
        let status = responseStatus
        if status != 206 && status != 0 {
            let reason =
                status == 200 ? "the server ignored the range and sent the whole resource" : "HTTP status \(status)"
            throw NBDError(.ioError, "curl: \(what): \(reason)")
        }
        if state.overflowed {
            throw NBDError(.ioError, "curl: \(what): the response is longer than the \(count) bytes asked for")
        }
        guard code == 0 else { throw NBDError(.ioError, "curl: \(what): \(failure(code))") }
        guard state.received == count else {
            throw NBDError(
                .ioError, "curl: \(what): the response has \(state.received) bytes, not the \(count) asked for")
        }
        if let range = Self.byteRange(state.contentRange), range.first != offset || range.last != last {
            throw NBDError(
                .ioError, "curl: \(what): the server sent bytes \(range.first)-\(range.last) instead")
        }
    }

    /// Sets up a write of `data` at `offset` with a `PUT` carrying `Content-Range: bytes A-B/SIZE`,
    /// as nbdkit's curl plugin writes. Any status but 2xx is an `EIO`. The data must stay valid
    /// until the returned second half has run.
    func startWrite(_ data: UnsafeRawBufferPointer, at offset: UInt64, exportSize: UInt64) throws(NBDError)
        -> Finish<Void>
    {
        try refreshScripts()
        let last = offset + UInt64(data.count) - 1
        state.reset(destination: nil, expectedStatus: 0)
        state.source = data
        try set(.range, nil as String?, parameter: "(internal)")
        try set(.noBody, 0, parameter: "(internal)")
        try set(.upload, 1, parameter: "(internal)")
        try check(
            curl.setopt(handle, .inFileSizeLarge, offset: Int64(data.count)), .inFileSizeLarge, parameter: "(internal)")
        try installHeaders(currentHeaders, extra: "Content-Range: bytes \(offset)-\(last)/\(exportSize)")
        beginTransfer()
        return { (code) throws(NBDError) in try self.finishWrite(code, count: data.count, at: offset) }
    }

    private func finishWrite(_ code: Int32, count: Int, at offset: UInt64) throws(NBDError) {
        let last = offset + UInt64(count) - 1
        var what: String { "PUT \(configuration.url) bytes \(offset)-\(last)" }
        let status = responseStatus
        try installHeaders(currentHeaders, extra: nil)
        try set(.httpGet, 1, parameter: "(internal)")
        if status != 0 && !(200..<300).contains(status) {
            throw NBDError(.ioError, "curl: \(what): HTTP status \(status)")
        }
        guard code == 0 else { throw NBDError(.ioError, "curl: \(what): \(failure(code))") }
        guard state.sent == count else {
            throw NBDError(.ioError, "curl: \(what): only \(state.sent) of \(count) bytes were sent")
        }
    }
}

// The callbacks libcurl calls with the handle's TransferState as context. Plain C functions:
// they capture nothing.

private let receiveBody: ccurl_data_callback = { data, size, count, context in
    guard let context else { return 0 }
    let state = Unmanaged<TransferState>.fromOpaque(context).takeUnretainedValue()
    let bytes = UnsafeRawBufferPointer(start: data, count: size * count)
    // Returning less than was given makes libcurl stop with CURLE_WRITE_ERROR.
    return state.body(bytes) ? size * count : 0
}

private let receiveHeader: ccurl_data_callback = { data, size, count, context in
    guard let context, let data else { return size * count }
    let state = Unmanaged<TransferState>.fromOpaque(context).takeUnretainedValue()
    state.header(UnsafeRawBufferPointer(start: data, count: size * count))
    return size * count
}

/// CURLINFO_DATA_IN: a piece of response body as it was received.
private let curlInfoDataIn: Int32 = 3

private let recordReceive: ccurl_debug_callback = { _, type, _, size, context in
    guard let context, type == curlInfoDataIn else { return 0 }
    let state = Unmanaged<TransferState>.fromOpaque(context).takeUnretainedValue()
    state.largestReceive = max(state.largestReceive, size)
    return 0
}

private let sendBody: ccurl_data_callback = { data, size, count, context in
    guard let context, let data else { return 0 }
    let state = Unmanaged<TransferState>.fromOpaque(context).takeUnretainedValue()
    return state.upload(into: UnsafeMutableRawBufferPointer(start: data, count: size * count))
}
