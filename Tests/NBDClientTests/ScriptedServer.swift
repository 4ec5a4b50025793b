import Foundation
import NBDTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A raw NBD server for tests, on a Unix socket: it does a fixed newstyle handshake (structured
/// replies, `base:allocation` with context id 1, `NBD_OPT_GO` with a 1 MiB export), then hands the
/// connection to a script that reads requests and sends whatever bytes the test wants, nonsense
/// included. Every receive has a timeout, so a test never hangs on it.
final class ScriptedServer: @unchecked Sendable {
    /// A request as the script sees it.
    struct Request {
        var flags: UInt16
        var type: UInt16
        var cookie: UInt64
        var offset: UInt64
        var length: UInt32
    }

    /// An extended request (after `NBD_OPT_EXTENDED_HEADERS`) as the script sees it.
    struct ExtendedRequest: Sendable {
        var magic: UInt32
        var flags: UInt16
        var type: UInt16
        var cookie: UInt64
        var offset: UInt64
        var length: UInt64
        var payload: [UInt8]
    }

    /// The accepted connection, for the script.
    final class Peer {
        let descriptor: Int32
        init(_ descriptor: Int32) { self.descriptor = descriptor }

        func receive(_ count: Int) -> [UInt8]? {
            var bytes = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let got = bytes.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress! + done, count - done, 0) }
                if got <= 0 { return nil }
                done += got
            }
            return bytes
        }

        func send(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }

        /// Reads one request header and, for a write, its payload.
        func request() -> Request? {
            guard let header = receive(28) else { return nil }
            let request = Request(
                flags: UInt16(header[4]) << 8 | UInt16(header[5]), type: UInt16(header[6]) << 8 | UInt16(header[7]),
                cookie: header[8..<16].reduce(0) { $0 << 8 | UInt64($1) },
                offset: header[16..<24].reduce(0) { $0 << 8 | UInt64($1) },
                length: header[24..<28].reduce(0) { $0 << 8 | UInt32($1) })
            if request.type == 1 { _ = receive(Int(request.length)) }
            return request
        }

        /// Reads one 32-byte extended request header and, when it has `NBD_CMD_FLAG_PAYLOAD_LEN`,
        /// its payload.
        func extendedRequest() -> ExtendedRequest? {
            guard let header = receive(32) else { return nil }
            let flags = UInt16(header[4]) << 8 | UInt16(header[5])
            let length = header[24..<32].reduce(0) { $0 << 8 | UInt64($1) }
            var payload: [UInt8] = []
            if flags & 32 != 0 {
                guard length <= 1 << 20, let bytes = receive(Int(length)) else { return nil }
                payload = bytes
            }
            return ExtendedRequest(
                magic: header[0..<4].reduce(0) { $0 << 8 | UInt32($1) }, flags: flags,
                type: UInt16(header[6]) << 8 | UInt16(header[7]),
                cookie: header[8..<16].reduce(0) { $0 << 8 | UInt64($1) },
                offset: header[16..<24].reduce(0) { $0 << 8 | UInt64($1) }, length: length, payload: payload)
        }

        func close() { Glibc.shutdown(descriptor, Int32(SHUT_RDWR)) }
    }

    let path: String
    private let listener: Int32
    let finished = DispatchSemaphore(value: 0)

    /// The option codes the client sent, in order.
    var options: [UInt32] { receivedOptions.get() }
    private let receivedOptions = LockedBox<[UInt32]>([])

    /// Answers `NBD_OPT_STARTTLS` with `startTLSReply` (default `NBD_REP_ERR_UNSUP`) followed by
    /// `afterStartTLS` in the same write, and then goes on in plaintext (a test's provider may
    /// pass the bytes through unencrypted). Answers `NBD_OPT_EXTENDED_HEADERS` with
    /// `extendedHeadersReply` (default `NBD_REP_ERR_UNSUP`; `NBD_REP_ACK`, 1, agrees).
    init(
        path: String, startTLSReply: UInt32 = 0x8000_0001, afterStartTLS: [UInt8] = [],
        extendedHeadersReply: UInt32 = 0x8000_0001,
        script: @escaping @Sendable (Peer) -> Void
    ) throws {
        self.path = path
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(listener, 4) == 0 else { throw XCTSkip("cannot listen on \(path)") }
        let finished = self.finished
        let receivedOptions = self.receivedOptions
        Thread.detachNewThread {
            let descriptor = accept(listener, nil, nil)
            guard descriptor >= 0 else {
                finished.signal()
                return
            }
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let peer = Peer(descriptor)
            let handshakeDone = ScriptedServer.handshake(peer) { option in
                receivedOptions.set(receivedOptions.get() + [option])
                if option == 11 { return ScriptedServer.optionReply(11, extendedHeadersReply) }
                return option == 5 ? ScriptedServer.optionReply(5, startTLSReply) + afterStartTLS : nil
            }
            if handshakeDone { script(peer) }
            peer.close()
            close(descriptor)
            finished.signal()
        }
    }

    deinit {
        close(listener)
        unlink(path)
    }

    static func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    private static func optionReply(_ option: UInt32, _ type: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
        be(UInt64(0x3_e889_0455_65a9)) + be(option) + be(type) + be(UInt32(payload.count)) + payload
    }

    /// Answers options until `NBD_OPT_GO`; returns false if the client went away.
    private static func handshake(_ peer: Peer, special: (UInt32) -> [UInt8]?) -> Bool {
        peer.send(be(UInt64(0x4e42_444d_4147_4943)) + be(UInt64(0x4948_4156_454F_5054)) + be(UInt16(3)))
        guard peer.receive(4) != nil else { return false }
        while true {
            guard let header = peer.receive(16) else { return false }
            let option = header[8..<12].reduce(0) { $0 << 8 | UInt32($1) }
            let length = header[12..<16].reduce(0) { $0 << 8 | UInt32($1) }
            guard peer.receive(Int(length)) != nil else { return false }
            if let answer = special(option) {
                peer.send(answer)
                continue
            }
            switch option {
            case 8:  // structured reply
                peer.send(optionReply(option, 1))
            case 10:  // set meta context: base:allocation as id 1
                peer.send(
                    optionReply(option, 4, be(UInt32(1)) + Array("base:allocation".utf8)) + optionReply(option, 1))
            case 7:  // go: a 1 MiB writable export with flush, FUA and DF
                let flags: UInt16 = 1 | 4 | 8 | 128
                peer.send(
                    optionReply(option, 3, be(UInt16(0)) + be(UInt64(1 << 20)) + be(flags)) + optionReply(option, 1))
                return true
            default:
                peer.send(optionReply(option, 0x8000_0001))
            }
        }
    }

    // Reply builders.
    static func simpleReply(cookie: UInt64, error: UInt32 = 0) -> [UInt8] {
        be(UInt32(0x6744_6698)) + be(error) + be(cookie)
    }

    static func chunk(cookie: UInt64, type: UInt16, flags: UInt16 = 1, payload: [UInt8]) -> [UInt8] {
        be(UInt32(0x668e_33ef)) + be(flags) + be(type) + be(cookie) + be(UInt32(payload.count)) + payload
    }
}
