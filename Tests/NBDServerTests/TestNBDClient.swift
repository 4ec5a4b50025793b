import NBDCore
import NBDWire
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The error a test client raises when the server misbehaves or closes.
struct TestClientError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A minimal blocking NBD client for tests: raw access to every message so that tests can send what
/// a real client never would.
final class TestNBDClient {
    // The protocol's numbers come from the wire layer, their one home.
    static let nbdMagic = ProtocolConstants.nbdMagic
    static let optionMagic = ProtocolConstants.optionMagic
    static let optionReplyMagic = ProtocolConstants.optionReplyMagic
    static let requestMagic = ProtocolConstants.requestMagic
    static let simpleReplyMagic = ProtocolConstants.simpleReplyMagic
    static let structuredReplyMagic = ProtocolConstants.structuredReplyMagic

    typealias Option = OptionCode
    typealias Reply = OptionReply

    enum Cmd {
        static let read = Command.read.rawValue
        static let write = Command.write.rawValue
        static let disconnect = Command.disconnect.rawValue
        static let flush = Command.flush.rawValue
        static let trim = Command.trim.rawValue
        static let cache = Command.cache.rawValue
        static let writeZeroes = Command.writeZeroes.rawValue
        static let blockStatus = Command.blockStatus.rawValue
    }

    enum Flag {
        static let fua = CommandFlags.fua.rawValue
        static let noHole = CommandFlags.noHole.rawValue
        static let df = CommandFlags.dontFragment.rawValue
        static let reqOne = CommandFlags.requestOne.rawValue
        static let fastZero = CommandFlags.fastZero.rawValue
    }

    struct OptionReplyMessage {
        var option: UInt32
        var type: UInt32
        var data: [UInt8]
    }

    struct SimpleReply {
        var error: UInt32
        var cookie: UInt64
    }

    struct Chunk {
        var flags: UInt16
        var type: UInt16
        var cookie: UInt64
        var payload: [UInt8]
    }

    /// The result of a successful GO.
    struct Export {
        var size: UInt64
        var flags: UInt16
        var infos: [OptionReplyMessage]
    }

    let fd: Int32

    /// Connects to a Unix socket. A receive timeout makes a broken server fail the test instead of
    /// hanging it; it is a safety net, never a synchronization.
    init(unixPath: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestClientError("socket failed") }
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
            throw TestClientError("connect to \(unixPath) failed: errno \(errno)")
        }
        setTimeout()
    }

    /// Uses `descriptor`, one end of a connected socket (such as a socket pair), and closes it at
    /// the end.
    init(adopting descriptor: Int32) {
        fd = descriptor
        setTimeout()
    }

    /// Connects to 127.0.0.1:`port`.
    init(tcpPort port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestClientError("socket failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            close(fd)
            throw TestClientError("connect to port \(port) failed: errno \(errno)")
        }
        setTimeout()
    }

    deinit {
        close(fd)
    }

    private func setTimeout() {
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    // MARK: Raw I/O

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            guard sent > 0 else { throw TestClientError("send failed: errno \(errno)") }
            offset += sent
        }
    }

    func receive(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let received = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, count - offset, 0) }
            if received == 0 { throw TestClientError("the server closed the connection") }
            if received < 0 {
                if errno == EINTR { continue }
                throw TestClientError("recv failed: errno \(errno)")
            }
            offset += received
        }
        return bytes
    }

    /// Whether the server closed the connection: blocks until it does or sends something.
    func serverClosed() -> Bool {
        var byte: UInt8 = 0
        while true {
            let received = recv(fd, &byte, 1, 0)
            if received < 0 && errno == EINTR { continue }
            return received == 0 || (received < 0 && errno == ECONNRESET)
        }
    }

    func shutdownWriting() {
        shutdown(fd, Int32(SHUT_WR))
    }

    // MARK: Handshake

    /// Reads the greeting and returns the handshake flags.
    func readGreeting() throws -> UInt16 {
        let bytes = try receive(18)
        guard bytes.be64(0) == Self.nbdMagic, bytes.be64(8) == Self.optionMagic else {
            throw TestClientError("bad greeting \(bytes)")
        }
        return bytes.be16(16)
    }

    func sendClientFlags(_ flags: UInt32) throws {
        try send(Array.be(flags))
    }

    /// Greeting plus client flags FIXED_NEWSTYLE | NO_ZEROES.
    func startHandshake(noZeroes: Bool = true) throws {
        let flags = try readGreeting()
        guard flags == 3 else { throw TestClientError("unexpected handshake flags \(flags)") }
        try sendClientFlags(noZeroes ? 3 : 1)
    }

    func sendOption(_ option: UInt32, _ data: [UInt8] = []) throws {
        try send(Array.be(Self.optionMagic) + Array.be(option) + Array.be(UInt32(data.count)) + data)
    }

    func readOptionReply() throws -> OptionReplyMessage {
        let header = try receive(20)
        guard header.be64(0) == Self.optionReplyMagic else { throw TestClientError("bad option reply magic") }
        let length = Int(header.be32(16))
        return OptionReplyMessage(option: header.be32(8), type: header.be32(12), data: try receive(length))
    }

    /// Reads replies until (and including) the ACK or an error.
    func readOptionReplies() throws -> [OptionReplyMessage] {
        var replies: [OptionReplyMessage] = []
        while true {
            let reply = try readOptionReply()
            replies.append(reply)
            if reply.type == Reply.ack || reply.type & (1 << 31) != 0 { return replies }
        }
    }

    static func infoData(name: String, requests: [UInt16]) -> [UInt8] {
        var data = Array.be(UInt32(name.utf8.count)) + Array(name.utf8) + Array.be(UInt16(requests.count))
        for request in requests { data += Array.be(request) }
        return data
    }

    static func metaContextData(name: String = "", queries: [String]) -> [UInt8] {
        var data = Array.be(UInt32(name.utf8.count)) + Array(name.utf8) + Array.be(UInt32(queries.count))
        for query in queries { data += Array.be(UInt32(query.utf8.count)) + Array(query.utf8) }
        return data
    }

    /// Sends GO and returns the export, or throws with the error reply.
    func go(name: String = "", requests: [UInt16] = []) throws -> Export {
        try sendOption(Option.go, Self.infoData(name: name, requests: requests))
        let replies = try readOptionReplies()
        guard let last = replies.last, last.type == Reply.ack else {
            throw TestClientError("GO failed with reply type 0x\(String(replies.last?.type ?? 0, radix: 16))")
        }
        guard let export = replies.first(where: { $0.type == Reply.info && $0.data.be16(0) == 0 }) else {
            throw TestClientError("GO reply lacks NBD_INFO_EXPORT")
        }
        return Export(size: export.data.be64(2), flags: export.data.be16(10), infos: replies)
    }

    /// The usual client: handshake, optional structured replies and base:allocation, GO.
    @discardableResult
    func connect(structured: Bool = false, metaContext: Bool = false, name: String = "") throws -> Export {
        try startHandshake()
        if structured {
            try sendOption(Option.structuredReply)
            guard try readOptionReply().type == Reply.ack else { throw TestClientError("structured replies refused") }
        }
        if metaContext {
            try sendOption(Option.setMetaContext, Self.metaContextData(name: name, queries: ["base:allocation"]))
            let replies = try readOptionReplies()
            guard replies.last?.type == Reply.ack, replies.count == 2 else {
                throw TestClientError("base:allocation refused")
            }
        }
        return try go(name: name)
    }

    // MARK: Transmission

    func sendRequest(
        type: UInt16, flags: UInt16 = 0, cookie: UInt64, offset: UInt64 = 0, length: UInt32 = 0,
        payload: [UInt8] = [], magic: UInt32 = requestMagic
    ) throws {
        try send(
            Self.request(
                type: type, flags: flags, cookie: cookie, offset: offset, length: length, payload: payload, magic: magic
            ))
    }

    static func request(
        type: UInt16, flags: UInt16 = 0, cookie: UInt64, offset: UInt64 = 0, length: UInt32 = 0,
        payload: [UInt8] = [], magic: UInt32 = requestMagic
    ) -> [UInt8] {
        Array.be(magic) + Array.be(flags) + Array.be(type) + Array.be(cookie) + Array.be(offset) + Array.be(length)
            + payload
    }

    func readSimpleReply() throws -> SimpleReply {
        let bytes = try receive(16)
        guard bytes.be32(0) == Self.simpleReplyMagic else {
            throw TestClientError("expected a simple reply, got magic 0x\(String(bytes.be32(0), radix: 16))")
        }
        return SimpleReply(error: bytes.be32(4), cookie: bytes.be64(8))
    }

    func readChunk() throws -> Chunk {
        let header = try receive(20)
        guard header.be32(0) == Self.structuredReplyMagic else {
            throw TestClientError("expected a structured reply, got magic 0x\(String(header.be32(0), radix: 16))")
        }
        let length = Int(header.be32(16))
        return Chunk(flags: header.be16(4), type: header.be16(6), cookie: header.be64(8), payload: try receive(length))
    }

    /// Reads the magic of the next reply without consuming anything else: returns the whole reply as
    /// either a simple reply (with `dataLength` bytes of data if it succeeded) or a chunk.
    enum AnyReply {
        case simple(SimpleReply, data: [UInt8])
        case chunk(Chunk)

        var cookie: UInt64 {
            switch self {
            case .simple(let reply, _): reply.cookie
            case .chunk(let chunk): chunk.cookie
            }
        }
    }

    func readAnyReply(readLengths: [UInt64: Int]) throws -> AnyReply {
        let magic = try receive(4)
        if magic.be32(0) == Self.simpleReplyMagic {
            let rest = try receive(12)
            let reply = SimpleReply(error: rest.be32(0), cookie: rest.be64(4))
            let length = reply.error == 0 ? readLengths[reply.cookie] ?? 0 : 0
            return .simple(reply, data: try receive(length))
        }
        guard magic.be32(0) == Self.structuredReplyMagic else { throw TestClientError("bad reply magic") }
        let header = try receive(16)
        let length = Int(header.be32(12))
        return .chunk(
            Chunk(flags: header.be16(0), type: header.be16(2), cookie: header.be64(4), payload: try receive(length)))
    }

    // Convenience with simple replies.

    func write(_ bytes: [UInt8], at offset: UInt64, flags: UInt16 = 0, cookie: UInt64 = 1) throws -> UInt32 {
        try sendRequest(
            type: Cmd.write, flags: flags, cookie: cookie, offset: offset, length: UInt32(bytes.count), payload: bytes)
        let reply = try readSimpleReply()
        guard reply.cookie == cookie else { throw TestClientError("cookie mismatch") }
        return reply.error
    }

    /// A read with simple replies; returns (error, data).
    func read(_ length: UInt32, at offset: UInt64, flags: UInt16 = 0, cookie: UInt64 = 2) throws -> (UInt32, [UInt8]) {
        try sendRequest(type: Cmd.read, flags: flags, cookie: cookie, offset: offset, length: length)
        let reply = try readSimpleReply()
        guard reply.cookie == cookie else { throw TestClientError("cookie mismatch") }
        return (reply.error, reply.error == 0 ? try receive(Int(length)) : [])
    }

    /// A request without payload or reply data; returns its error.
    func command(_ type: UInt16, flags: UInt16 = 0, offset: UInt64 = 0, length: UInt32 = 0, cookie: UInt64 = 3) throws
        -> UInt32
    {
        try sendRequest(type: type, flags: flags, cookie: cookie, offset: offset, length: length)
        let reply = try readSimpleReply()
        guard reply.cookie == cookie else { throw TestClientError("cookie mismatch") }
        return reply.error
    }

    func disconnect() throws {
        try sendRequest(type: Cmd.disconnect, cookie: 0)
    }
}

extension Array where Element == UInt8 {
    static func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        Swift.withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    func be16(_ offset: Int) -> UInt16 { UInt16(self[offset]) << 8 | UInt16(self[offset + 1]) }
    func be32(_ offset: Int) -> UInt32 { (0..<4).reduce(0) { $0 << 8 | UInt32(self[offset + $1]) } }
    func be64(_ offset: Int) -> UInt64 { (0..<8).reduce(0) { $0 << 8 | UInt64(self[offset + $1]) } }
}
