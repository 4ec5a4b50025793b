import XCTest

/// The test of a connection performing the next read while the end of a large reply waits for the
/// client (the server's `ReplyTail`), for any transport: a plain socket or TLS. The transport's
/// client sends the reads and receives the replies; the scenario decides what is sent when and
/// checks what comes back.
///
/// The export must be 4 MiB holding ``pattern``, and its reads watched by the ``ReadWatch`` given to
/// ``run(watch:)``; its socket must hold far less than one 1 MiB reply.
public struct ReadOverlapScenario {
    /// A reply, as the transport's client read it: the simple reply header's cookie and error, and
    /// the data that followed.
    public typealias Reply = (cookie: UInt64, error: UInt32, data: [UInt8])

    public static let mebibyte = 1 << 20
    /// The export's 4 MiB.
    public static let pattern = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }

    private let sendReads: ([Int]) throws -> Void
    private let receiveReply: () throws -> Reply

    /// - Parameters:
    ///   - sendReads: Sends 1 MiB reads at the given offsets in MiB, cookie = offset + 1, in one
    ///     `send`, so that the server has all of them before it replies to the first.
    ///   - receiveReply: Receives one simple reply to a 1 MiB read, with its data.
    public init(sendReads: @escaping ([Int]) throws -> Void, receiveReply: @escaping () throws -> Reply) {
        self.sendReads = sendReads
        self.receiveReply = receiveReply
    }

    /// Sends reads at `mebibytes` (see ``init(sendReads:receiveReply:)``).
    public func sendReads(at mebibytes: [Int]) throws {
        try sendReads(mebibytes)
    }

    /// Receives the reply to the read at `mebibyte` and checks its cookie (replies in order), error
    /// and data.
    public func expectReply(at mebibyte: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let reply = try receiveReply()
        XCTAssertEqual(reply.cookie, UInt64(mebibyte + 1), "replies in order", file: file, line: line)
        XCTAssertEqual(reply.error, 0, file: file, line: line)
        let start = mebibyte * Self.mebibyte
        XCTAssertTrue(
            reply.data[...] == Self.pattern[start..<(start + Self.mebibyte)], "data intact", file: file, line: line)
    }

    /// Reads at 0 and 1 MiB, answered (the first read behind a large reply is timed, not yet
    /// overlapped: nothing is known); then reads at 2 and 3 MiB while the client reads nothing. The
    /// reply at 2 MiB cannot fit in the socket, yet the read at 3 MiB must start: the server performs
    /// it before waiting for the client. Then both replies, whole and in order.
    public func run(watch: ReadWatch, file: StaticString = #filePath, line: UInt = #line) throws {
        try sendReads(at: [0, 1])
        try expectReply(at: 0, file: file, line: line)
        try expectReply(at: 1, file: file, line: line)

        let nextRead = watch.arrivals(at: 3 << 20)
        try sendReads(at: [2, 3])
        nextRead.waitOrFail(
            "the read at 3 MiB to start while the reply before it waits for the client", file: file, line: line)
        try expectReply(at: 2, file: file, line: line)
        try expectReply(at: 3, file: file, line: line)
    }
}
