import Foundation
import NBDClient
import NBDCore
import NBDTestSupport
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The client's side of `NBD_OPT_STARTTLS` through the `ClientTLSProvider` seam, without GnuTLS: a
/// scripted server answers STARTTLS as each test needs, and a provider whose "session" passes bytes
/// through unencrypted stands in for TLS, so the order of options and the fallbacks are visible.
final class StartTLSNegotiationTests: ClientTestCase {
    /// A session that sends and receives the socket's bytes as they are.
    final class PassThroughSession: ClientTLSSession {
        let descriptor: Int32
        init(_ descriptor: Int32) { self.descriptor = descriptor }
        func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int {
            recv(descriptor, buffer.baseAddress, buffer.count, 0)
        }
        func send(_ bytes: UnsafeRawBufferPointer) -> Bool {
            var done = 0
            while done < bytes.count {
                let sent = Glibc.send(descriptor, bytes.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL))
                if sent <= 0 { return false }
                done += sent
            }
            return true
        }
        func close() {}
    }

    /// Counts upgrades and hands out pass-through sessions.
    final class PassThroughProvider: ClientTLSProvider {
        private let count = LockedBox(0)
        var upgrades: Int { count.get() }
        func startSession(descriptor: Int32, options: ClientTLSOptions, hostname: String?, timeout: Duration?)
            throws(NBDError) -> any ClientTLSSession
        {
            count.set(count.get() + 1)
            return PassThroughSession(descriptor)
        }
    }

    private static let ack: UInt32 = 1
    private static let unsupported: UInt32 = 0x8000_0001
    private static let policy: UInt32 = 0x8000_0002
    private static let invalid: UInt32 = 0x8000_0003

    private func endpoint(_ server: ScriptedServer, _ mode: ClientTLSMode) -> NBDEndpoint {
        NBDEndpoint(.unix(path: server.path), tls: ClientTLSOptions(mode: mode, pskFile: "/unused"))
    }

    /// A server that serves one read of zeroes after the handshake.
    private func server(reply: UInt32, after: [UInt8] = []) throws -> ScriptedServer {
        try ScriptedServer(path: try socketPath("starttls"), startTLSReply: reply, afterStartTLS: after) { peer in
            if let request = peer.request(), request.type == 0 {
                peer.send(
                    ScriptedServer.simpleReply(cookie: request.cookie)
                        + [UInt8](repeating: 0, count: Int(request.length)))
            }
        }
    }

    func testStartTLSComesFirstAndTheRestGoesThroughTheSession() async throws {
        let server = try server(reply: Self.ack)
        let provider = PassThroughProvider()
        let connection = try await NBDConnection.connect(to: endpoint(server, .require), tlsProvider: provider)
        XCTAssertTrue(connection.export.usesTLS)
        XCTAssertEqual(provider.upgrades, 1)
        XCTAssertEqual(
            server.options, [5, 11, 8, 10, 7],
            "STARTTLS, then extended headers (refused), structured replies, meta context, GO")
        let data = try await connection.read(count: 512, at: 0)
        XCTAssertEqual(data, [UInt8](repeating: 0, count: 512))
        await connection.disconnect()
    }

    func testPlaintextAfterTheAcknowledgementIsRefused() async throws {
        // An injected option reply right behind the ACK, before any TLS handshake.
        let server = try server(reply: Self.ack, after: Array(repeating: 0x41, count: 20))
        let provider = PassThroughProvider()
        do {
            _ = try await NBDConnection.connect(to: endpoint(server, .require), tlsProvider: provider)
            XCTFail("bytes behind the STARTTLS acknowledgement were accepted")
        } catch {
            XCTAssertTrue(error.message.contains("plaintext after acknowledging NBD_OPT_STARTTLS"), error.message)
        }
        XCTAssertEqual(provider.upgrades, 0)
    }

    func testRequireFailsWhenStartTLSIsRefused() async throws {
        for reply in [Self.unsupported, Self.policy] {
            let server = try server(reply: reply)
            let provider = PassThroughProvider()
            do {
                _ = try await NBDConnection.connect(to: endpoint(server, .require), tlsProvider: provider)
                XCTFail("a server refusing STARTTLS was used under require")
            } catch {
                XCTAssertEqual(error.code, .notPermitted)
                XCTAssertTrue(error.message.contains("refused NBD_OPT_STARTTLS"), error.message)
            }
            XCTAssertEqual(server.options, [5], "nothing after the refused STARTTLS")
        }
    }

    func testOnFallsBackToPlaintextOnUnsupportedOrPolicy() async throws {
        for reply in [Self.unsupported, Self.policy] {
            let server = try server(reply: reply)
            let provider = PassThroughProvider()
            let connection = try await NBDConnection.connect(to: endpoint(server, .on), tlsProvider: provider)
            XCTAssertFalse(connection.export.usesTLS)
            XCTAssertEqual(provider.upgrades, 0)
            XCTAssertEqual(server.options, [5, 11, 8, 10, 7])
            await connection.disconnect()
        }
    }

    func testOnDoesNotFallBackOnOtherErrors() async throws {
        let server = try server(reply: Self.invalid)
        do {
            _ = try await NBDConnection.connect(to: endpoint(server, .on), tlsProvider: PassThroughProvider())
            XCTFail("NBD_REP_ERR_INVALID to STARTTLS was taken as a plaintext server")
        } catch {
            XCTAssertTrue(error.message.contains("NBD_REP_ERR_INVALID"), error.message)
        }
    }

    func testOffNeverSendsStartTLS() async throws {
        let server = try server(reply: Self.ack)
        let connection = try await NBDConnection.connect(
            to: endpoint(server, .off), tlsProvider: PassThroughProvider())
        XCTAssertFalse(connection.export.usesTLS)
        XCTAssertEqual(server.options, [11, 8, 10, 7])
        await connection.disconnect()
    }
}
