import NBDServer
import NBDGnuTLS
import NBDTLS
import NBDTLSClient
import NBDWire
import XCTest

/// The security rules of the NBD protocol's TLS section, each checked with raw bytes.
final class StartTLSSecurityTests: TLSServerTestCase {
    typealias Option = RawTLSClient.Option
    typealias Reply = RawTLSClient.Reply

    /// With `--tls=require`, every option before STARTTLS except ABORT is refused with
    /// `NBD_REP_ERR_TLS_REQD`, and nothing about the export (name, size, description) is sent.
    func testRequireRefusesEveryOptionBeforeStartTLSAndLeaksNothing() async throws {
        let (path, problems) = try startServer(tls: .require)
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        let options: [(UInt32, [UInt8])] = [
            (Option.list, []), (Option.info, RawTLSClient.infoData(requests: [0, 1, 2, 3])),
            (Option.go, RawTLSClient.infoData(requests: [2])), (Option.structuredReply, []),
            (Option.listMetaContext, RawTLSClient.metaContextData([])), (99, [1, 2, 3]),
        ]
        for (option, data) in options {
            try client.sendOption(option, data)
            let replies = try client.readOptionReplies()
            XCTAssertEqual(replies.count, 1, "option \(option) got \(replies.count) replies")
            XCTAssertEqual(replies.first?.option, option)
            XCTAssertEqual(replies.first?.type, Reply.errTLSRequired, "option \(option)")
            let text = String(decoding: replies.first?.data ?? [], as: UTF8.self)
            XCTAssertFalse(text.contains(Self.description), "option \(option) leaked the description: \(text)")
        }
        try client.sendOption(Option.abort)
        XCTAssertEqual(try client.readOptionReply().type, Reply.ack)
        await waitForProblem("NBD_REP_ERR_TLS_REQD", in: problems)
        XCTAssertEqual(problems.all.filter { $0.contains("NBD_REP_ERR_TLS_REQD") }.count, 1, "\(problems.all)")
    }

    /// `NBD_OPT_EXPORT_NAME` has no error reply, so under `--tls=require` it disconnects without a
    /// byte of the export's size or flags.
    func testRequireDisconnectsExportNameWithoutSendingAnything() async throws {
        let (path, problems) = try startServer(tls: .require)
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Option.exportName)
        XCTAssertEqual(try client.rawBytesUntilClosed(), [], "the server must close without replying")
        await waitForProblem("NBD_OPT_EXPORT_NAME without NBD_OPT_STARTTLS", in: problems)
    }

    /// With `--tls=on` a plaintext client is served, and STARTTLS is offered.
    func testOnServesPlaintextAndTLSClients() throws {
        let (path, _) = try startServer(tls: .on)
        let plain = try RawTLSClient(unixPath: path)
        try plain.startHandshake()
        try plain.sendOption(Option.go, RawTLSClient.infoData())
        XCTAssertEqual(try plain.readOptionReplies().last?.type, Reply.ack)

        let secure = try RawTLSClient(unixPath: path)
        try secure.startHandshake()
        try secure.startTLS(try clientCertificates)
        try secure.sendOption(Option.go, RawTLSClient.infoData())
        XCTAssertEqual(try secure.readOptionReplies().last?.type, Reply.ack)
        // A 1 MiB write and read through TLS records.
        let data = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try secure.sendRequest(1, length: UInt32(data.count), cookie: 5, payload: data)
        let written = try secure.readSimpleReplyHeader()
        XCTAssertEqual(written.error, 0)
        XCTAssertEqual(written.cookie, 5)
        try secure.sendRequest(0, length: UInt32(data.count), cookie: 6)
        let read = try secure.readSimpleReplyHeader()
        XCTAssertEqual(read.error, 0)
        XCTAssertEqual(try secure.receive(data.count), data)
    }

    /// The option-injection attack (nbdkit CVE-2021-3716, fixed in 1.26.5/1.27.3): options written
    /// behind NBD_OPT_STARTTLS in the same packet, before the TLS handshake, must be discarded, not
    /// answered over TLS as if the client had sent them there.
    func testOptionsSentBehindStartTLSBeforeTheHandshakeAreDiscarded() async throws {
        let (path, problems) = try startServer(tls: .require)
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        // One write: STARTTLS, then a structured-reply request and a GO an attacker slipped in.
        try client.sendPlaintext(
            RawTLSClient.option(Option.startTLS) + RawTLSClient.option(Option.structuredReply)
                + RawTLSClient.option(Option.go, RawTLSClient.infoData()))
        let ack = try client.readOptionReply()
        XCTAssertEqual(ack.option, Option.startTLS)
        XCTAssertEqual(ack.type, Reply.ack)
        try client.startTLSSession(try clientCertificates)
        // The first reply over TLS must answer what the client sends over TLS.
        try client.sendOption(Option.list)
        let replies = try client.readOptionReplies()
        XCTAssertEqual(replies.map(\.option), [Option.list, Option.list], "injected options were acted on")
        XCTAssertEqual(replies.last?.type, Reply.ack)
        // And the injected structured-reply request did not take effect: a read gets a simple reply.
        try client.sendOption(Option.go, RawTLSClient.infoData())
        XCTAssertEqual(try client.readOptionReplies().last?.type, Reply.ack)
        try client.sendRequest(0, length: 512, cookie: 9)
        XCTAssertEqual(try client.readSimpleReplyHeader().magic, RawTLSClient.simpleReplyMagic)
        await waitForProblem("discarded", in: problems)
    }

    /// Structured replies and meta contexts negotiated in plaintext are forgotten after STARTTLS.
    func testOptionsNegotiatedBeforeStartTLSAreForgotten() throws {
        let (path, _) = try startServer(tls: .on)
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Option.structuredReply)
        XCTAssertEqual(try client.readOptionReply().type, Reply.ack)
        try client.sendOption(Option.setMetaContext, RawTLSClient.metaContextData(["base:allocation"]))
        XCTAssertEqual(try client.readOptionReplies().map(\.type), [Reply.metaContext, Reply.ack])

        try client.startTLS(try clientCertificates)
        // Meta contexts need structured replies, which are no longer negotiated.
        try client.sendOption(Option.setMetaContext, RawTLSClient.metaContextData(["base:allocation"]))
        XCTAssertEqual(try client.readOptionReply().type, Reply.errInvalid, "structured replies survived STARTTLS")
        try client.sendOption(Option.go, RawTLSClient.infoData())
        let go = try client.readOptionReplies()
        let export = try XCTUnwrap(go.first { $0.type == Reply.info && $0.data.count == 12 })
        let flags = UInt16(export.data[10]) << 8 | UInt16(export.data[11])
        XCTAssertEqual(flags & (1 << 7), 0, "SEND_DF advertised without structured replies")
        // Reads get simple replies, and block status (base:allocation is not selected) EINVAL.
        try client.sendRequest(0, length: 512, cookie: 1)
        let read = try client.readSimpleReplyHeader()
        XCTAssertEqual(read.magic, RawTLSClient.simpleReplyMagic)
        XCTAssertEqual(read.error, 0)
        _ = try client.receive(512)
        try client.sendRequest(7, length: 4096, cookie: 2)
        let status = try client.readSimpleReplyHeader()
        XCTAssertEqual(status.magic, RawTLSClient.simpleReplyMagic)
        XCTAssertEqual(status.error, 22, "block status must fail with EINVAL")
    }

    /// Extended headers negotiated in plaintext are forgotten after STARTTLS too: the client gets
    /// compact replies unless it asks again over TLS.
    func testExtendedHeadersNegotiatedBeforeStartTLSAreForgotten() throws {
        let (path, _) = try startServer(tls: .on)
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        try client.sendOption(OptionCode.extendedHeaders)
        XCTAssertEqual(try client.readOptionReply().type, Reply.ack)
        try client.startTLS(try clientCertificates)
        try client.sendOption(Option.go, RawTLSClient.infoData())
        XCTAssertEqual(try client.readOptionReplies().last?.type, Reply.ack)
        // A compact request is served with a simple reply: extended headers did not survive.
        try client.sendRequest(0, length: 512, cookie: 1)
        let read = try client.readSimpleReplyHeader()
        XCTAssertEqual(read.magic, RawTLSClient.simpleReplyMagic, "extended headers survived STARTTLS")
        XCTAssertEqual(read.error, 0)
        _ = try client.receive(512)
    }

    /// A second STARTTLS over TLS is refused with `NBD_REP_ERR_INVALID`, and the session goes on.
    func testSecondStartTLSIsRefused() throws {
        let (path, _) = try startServer(tls: .require)
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        try client.startTLS(try clientCertificates)
        try client.sendOption(Option.startTLS)
        let refusal = try client.readOptionReply()
        XCTAssertEqual(refusal.option, Option.startTLS)
        XCTAssertEqual(refusal.type, Reply.errInvalid)
        try client.sendOption(Option.list)
        XCTAssertEqual(try client.readOptionReplies().map(\.type), [Reply.server, Reply.ack])
    }

    /// Plaintext after the TLS handshake is not a TLS record: the server closes the connection
    /// without answering it, and says why.
    func testPlaintextAfterTheHandshakeClosesTheConnection() async throws {
        let (path, problems) = try startServer(tls: .require)
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        try client.startTLS(try clientCertificates)
        try client.sendPlaintext(RawTLSClient.option(Option.list))
        let received = try client.rawBytesUntilClosed()
        // Whatever came back is TLS records (an alert or a session ticket), never an option reply.
        let replyMagic = Array<UInt8>.be(RawTLSClient.optionReplyMagic)
        XCTAssertFalse(
            received.count >= 8 && (0...(received.count - 8)).contains { Array(received[$0..<($0 + 8)]) == replyMagic },
            "the server answered a plaintext option after the TLS handshake")
        await waitForProblem("closing the TLS connection", in: problems)
    }

    /// A client that sends STARTTLS and then nothing is dropped by the handshake timeout.
    func testHandshakeTimeoutCoversTheTLSHandshake() async throws {
        let (path, problems) = try startServer(tls: .require, handshakeTimeout: .milliseconds(200))
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Option.startTLS)
        XCTAssertEqual(try client.readOptionReply().type, Reply.ack)
        XCTAssertEqual(try client.rawBytesUntilClosed(), [], "the silent client must be dropped")
        await waitForProblem("did not complete the TLS handshake in time", in: problems)
    }

    /// STARTTLS with data is malformed; with TLS off it is refused by policy (as nbdkit and
    /// qemu-nbd answer).
    func testStartTLSWithDataIsInvalidAndRefusedByPolicyWhenOff() throws {
        let (path, _) = try startServer(tls: .on)
        let client = try RawTLSClient(unixPath: path)
        try client.startHandshake()
        try client.sendOption(Option.startTLS, [0])
        XCTAssertEqual(try client.readOptionReply().type, Reply.errInvalid)

        let (offPath, _) = try startServer(tls: .off)
        let plain = try RawTLSClient(unixPath: offPath)
        try plain.startHandshake()
        try plain.sendOption(Option.startTLS)
        XCTAssertEqual(try plain.readOptionReply().type, Reply.errPolicy)
    }
}
