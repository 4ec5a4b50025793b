import NBDGnuTLS
import NBDTLS
import NBDTLSClient
import NBDWire
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking NBD client for the TLS tests that writes raw bytes, in plaintext or, after
/// ``startTLS(_:)``, through a client ``TLSSession``: it can send what no real client would
/// (options injected behind `NBD_OPT_STARTTLS`, plaintext after the handshake).
final class RawTLSClient {
    // The protocol's numbers come from the wire layer, their one home.
    static let optionMagic = ProtocolConstants.optionMagic
    static let optionReplyMagic = ProtocolConstants.optionReplyMagic
    static let requestMagic = ProtocolConstants.requestMagic
    static let simpleReplyMagic = ProtocolConstants.simpleReplyMagic

    typealias Option = OptionCode
    typealias Reply = NBDWire.OptionReply

    struct OptionReply {
        var option: UInt32
        var type: UInt32
        var data: [UInt8]
    }

    let fd: Int32
    private(set) var session: TLSSession?

    /// Connects to a Unix socket. The receive timeout is a safety net that fails a test whose server
    /// misbehaves; it never synchronizes anything.
    init(unixPath: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw XCTSkip("socket() failed") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(unixPath.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            close(fd)
            throw ClientError("connect to \(unixPath) failed: errno \(errno)")
        }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        session?.close()
        session = nil
        close(fd)
    }

    struct ClientError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    // MARK: Bytes

    /// Sends `bytes` through the TLS session once there is one, else in plaintext.
    func send(_ bytes: [UInt8]) throws {
        if let session {
            guard bytes.withUnsafeBytes({ session.send($0) }) else { throw ClientError("TLS send failed") }
            return
        }
        try sendPlaintext(bytes)
    }

    /// Sends `bytes` on the socket itself, bypassing any TLS session.
    func sendPlaintext(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            guard sent > 0 else { throw ClientError("send failed: errno \(errno)") }
            offset += sent
        }
    }

    func receive(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let received = bytes.withUnsafeMutableBytes { buffer -> Int in
                let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[offset...])
                if let session { return session.receive(into: rest) }
                return recv(fd, rest.baseAddress!, rest.count, 0)
            }
            if received == 0 { throw ClientError("the server closed the connection") }
            if received < 0 {
                if session == nil && errno == EINTR { continue }
                throw ClientError("receive failed (errno \(errno))")
            }
            offset += received
        }
        return bytes
    }

    /// Reads the raw socket until the server closes it; returns every byte received before that.
    /// Fails (throws) if the server keeps the connection open past the receive timeout.
    func rawBytesUntilClosed() throws -> [UInt8] {
        var all: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let received = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if received == 0 || (received < 0 && errno == ECONNRESET) { return all }
            if received < 0 {
                if errno == EINTR { continue }
                throw ClientError("the server did not close the connection (errno \(errno))")
            }
            all += chunk[0..<received]
        }
    }

    // MARK: Handshake

    /// Reads the greeting and sends the client flags (fixed newstyle, no zeroes).
    func startHandshake() throws {
        let greeting = try receive(18)
        guard greeting.be64(0) == 0x4e42_444d_4147_4943, greeting.be64(8) == Self.optionMagic else {
            throw ClientError("bad greeting \(greeting)")
        }
        try send(Array.be(UInt32(3)))
    }

    static func option(_ option: UInt32, _ data: [UInt8] = []) -> [UInt8] {
        Array.be(optionMagic) + Array.be(option) + Array.be(UInt32(data.count)) + data
    }

    func sendOption(_ option: UInt32, _ data: [UInt8] = []) throws {
        try send(Self.option(option, data))
    }

    func readOptionReply() throws -> OptionReply {
        let header = try receive(20)
        guard header.be64(0) == Self.optionReplyMagic else { throw ClientError("bad option reply magic \(header)") }
        let length = Int(header.be32(16))
        return OptionReply(option: header.be32(8), type: header.be32(12), data: try receive(length))
    }

    /// Reads replies up to and including the final one (`ACK` or an error).
    func readOptionReplies() throws -> [OptionReply] {
        var replies: [OptionReply] = []
        while true {
            let reply = try readOptionReply()
            replies.append(reply)
            if reply.type == Reply.ack || reply.type & (1 << 31) != 0 { return replies }
        }
    }

    /// Runs the client side of the TLS handshake (after the server acknowledged STARTTLS).
    func startTLSSession(_ credentials: TLSClientCredentials) throws {
        session = try TLSSession.client(descriptor: fd, credentials: credentials, timeout: .seconds(20))
    }

    /// Sends `NBD_OPT_STARTTLS`, expects `ACK`, and runs the TLS handshake.
    func startTLS(_ credentials: TLSClientCredentials) throws {
        try sendOption(Option.startTLS)
        let reply = try readOptionReply()
        guard reply.option == Option.startTLS, reply.type == Reply.ack else {
            throw ClientError("STARTTLS was answered with type 0x\(String(reply.type, radix: 16))")
        }
        try startTLSSession(credentials)
    }

    static func infoData(name: String = "", requests: [UInt16] = []) -> [UInt8] {
        Array.be(UInt32(name.utf8.count)) + Array(name.utf8) + Array.be(UInt16(requests.count))
            + requests.flatMap { Array.be($0) }
    }

    static func metaContextData(_ queries: [String]) -> [UInt8] {
        Array.be(UInt32(0)) + Array.be(UInt32(queries.count))
            + queries.flatMap { Array.be(UInt32($0.utf8.count)) + Array($0.utf8) }
    }

    // MARK: Transmission

    func sendRequest(_ type: UInt16, offset: UInt64 = 0, length: UInt32 = 0, cookie: UInt64 = 1, payload: [UInt8] = [])
        throws
    {
        try send(
            Array.be(Self.requestMagic) + Array.be(UInt16(0)) + Array.be(type) + Array.be(cookie) + Array.be(offset)
                + Array.be(length) + payload)
    }

    /// Reads a simple reply header: (magic, error, cookie).
    func readSimpleReplyHeader() throws -> (magic: UInt32, error: UInt32, cookie: UInt64) {
        let header = try receive(16)
        return (header.be32(0), header.be32(4), header.be64(8))
    }
}

extension Array where Element == UInt8 {
    static func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        Swift.withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }
    func be32(_ offset: Int) -> UInt32 { (0..<4).reduce(0) { $0 << 8 | UInt32(self[offset + $1]) } }
    func be64(_ offset: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(self[offset + $1]) } }
}
