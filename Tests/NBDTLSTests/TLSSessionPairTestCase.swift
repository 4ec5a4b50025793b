import Dispatch
import NBDCore
import NBDServer
import NBDGnuTLS
import NBDTLS
import NBDTLSClient
import NBDTestSupport
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// Tests of one TLS session pair: a server session (made by `TLSServerTransport`, with a
/// pre-shared key) and a client `TLSSession` over a socket pair.
class TLSSessionPairTestCase: XCTestCase {
    private var credentials: TestTLSCredentials!
    private(set) var descriptors: [Int32] = []

    override func setUpWithError() throws {
        credentials = try TestTLSCredentials.make()
    }

    override func tearDown() {
        for descriptor in descriptors { close(descriptor) }
        descriptors = []
        credentials?.remove()
    }

    /// A server and a client session over a socket pair, both handshakes bounded by a timeout.
    func connectedSessions() throws -> (server: any SecureSession, client: TLSSession) {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        descriptors = pair
        let transport = try TLSServerTransport(pskFile: credentials.pskFile)
        let serverDescriptor = pair[0]
        let server = LockedValue<Result<any SecureSession, NBDError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let result = Result { () throws(NBDError) -> any SecureSession in
                try transport.startServerSession(
                    descriptor: serverDescriptor, timeout: .seconds(20), reportProblem: { _ in })
            }
            server.withLock { $0 = result }
            done.signal()
        }
        let client = try TLSSession.client(
            descriptor: pair[1],
            credentials: TLSClientCredentials(pskFile: credentials.pskFile, username: TestTLSCredentials.pskUsername),
            timeout: .seconds(20))
        done.waitOrFail("the server's TLS handshake")
        let session = try XCTUnwrap(server.withLock { $0 }).get()
        return (session, client)
    }
}
