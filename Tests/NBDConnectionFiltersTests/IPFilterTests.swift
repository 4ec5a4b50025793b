import NBDBackends
import NBDConnectionFilters
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

final class IPFilterTests: XCTestCase {
    let loopback4 = PeerAddress.ipv4([127, 0, 0, 1], port: 40000)
    let other4 = PeerAddress.ipv4([10, 1, 2, 3], port: 40000)
    let loopback6 = PeerAddress.ipv6([UInt8](repeating: 0, count: 15) + [1], port: 40000)
    let unixPeer = PeerAddress.unix(credentials: PeerCredentials(pid: 42, uid: 1000, gid: 100))

    func testKeywordsMatchTheirFamilies() throws {
        XCTAssertTrue(try IPRule("all", parameter: "allow").matches(unixPeer))
        XCTAssertTrue(try IPRule("any", parameter: "allow").matches(loopback6))
        XCTAssertTrue(try IPRule("anyipv4", parameter: "allow").matches(other4))
        XCTAssertFalse(try IPRule("allipv4", parameter: "allow").matches(loopback6))
        XCTAssertTrue(try IPRule("anyipv6", parameter: "allow").matches(loopback6))
        XCTAssertTrue(try IPRule("anyunix", parameter: "allow").matches(unixPeer))
        XCTAssertFalse(try IPRule("anyunix", parameter: "allow").matches(loopback4))
        XCTAssertFalse(try IPRule("anyvsock", parameter: "allow").matches(loopback4))
    }

    func testAddressesAndNetworksMatchByPrefix() throws {
        XCTAssertTrue(try IPRule("127.0.0.1", parameter: "allow").matches(loopback4))
        XCTAssertFalse(try IPRule("127.0.0.2", parameter: "allow").matches(loopback4))
        XCTAssertTrue(try IPRule("127.0.0.0/8", parameter: "allow").matches(loopback4))
        XCTAssertTrue(try IPRule("10.0.0.0/9", parameter: "allow").matches(other4))
        XCTAssertFalse(try IPRule("10.128.0.0/9", parameter: "allow").matches(other4))
        XCTAssertTrue(try IPRule("0.0.0.0/0", parameter: "allow").matches(other4))
        XCTAssertTrue(try IPRule("::1", parameter: "allow").matches(loopback6))
        XCTAssertTrue(try IPRule("::/64", parameter: "allow").matches(loopback6))
        XCTAssertFalse(try IPRule("::1", parameter: "allow").matches(loopback4))
    }

    func testUnixCredentialsMatchOnlyUnixPeers() throws {
        XCTAssertTrue(try IPRule("uid:1000", parameter: "allow").matches(unixPeer))
        XCTAssertFalse(try IPRule("uid:0", parameter: "allow").matches(unixPeer))
        XCTAssertTrue(try IPRule("gid:100", parameter: "allow").matches(unixPeer))
        XCTAssertTrue(try IPRule("pid:42", parameter: "allow").matches(unixPeer))
        XCTAssertFalse(try IPRule("uid:1000", parameter: "allow").matches(loopback4))
    }

    func testBadRulesAreRefusedNamingTheParameterAndTheForms() throws {
        for bad in ["foo", "1.2.3.4/33", "::1/129", "uid:x", "pid:-1", "", "1.2.3.4/"] {
            XCTAssertThrowsError(try IPLayer(parameters: ["deny": "all,\(bad)"]), bad) { error in
                let error = error as? NBDError
                XCTAssertEqual(error?.code, .invalidArgument)
                XCTAssertTrue(error?.message.contains("deny=") == true, "\(String(describing: error))")
                XCTAssertTrue(error?.message.contains("anyipv4") == true, "\(String(describing: error))")
            }
        }
    }

    func testAllowIsCheckedBeforeDenyWhateverTheOrder() throws {
        let layer = try IPLayer(parameters: ["deny": "all", "allow": "127.0.0.1,uid:1000"])
        XCTAssertTrue(layer.admits(loopback4))
        XCTAssertTrue(layer.admits(unixPeer))
        XCTAssertFalse(layer.admits(other4))
        XCTAssertFalse(layer.admits(nil))
        let denyOnly = try IPLayer(parameters: ["deny": "10.0.0.0/8"])
        XCTAssertFalse(denyOnly.admits(other4))
        XCTAssertTrue(denyOnly.admits(loopback6))
        XCTAssertTrue(try IPLayer(parameters: [:]).admits(nil))
    }

    func testRefusedClientIsRefusedAtPreconnectWithEPERM() async throws {
        let stack = FilterStack(
            [try IPLayer(parameters: ["allow": "anyunix", "deny": "all"])],
            over: try MemoryBackendProvider(size: 1 << 20))
        try await stack.preconnect(ConnectionInfo(peer: unixPeer))
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await stack.preconnect(ConnectionInfo(peer: self.other4)) },
            code: .notPermitted)
    }

    func testPeerAddressesPrintAsNbdkitsInfoPluginDoes() {
        XCTAssertEqual(loopback4.description, "127.0.0.1:40000")
        XCTAssertEqual(loopback6.description, "[::1]:40000")
        XCTAssertEqual(unixPeer.description, "unix")
    }
}
