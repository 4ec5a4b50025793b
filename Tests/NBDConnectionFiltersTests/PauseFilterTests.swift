import Foundation
import NBDBackends
import NBDConnectionFilters
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

final class PauseFilterTests: XCTestCase {
    func testPausedRequestsWaitUntilResumed() async throws {
        let gate = PauseGate()
        let stack = FilterStack([PauseLayer(gate: gate)], over: try MemoryBackendProvider(size: 4096))
        let backend = try await stack.open(ConnectionInfo())
        let idle = DispatchSemaphore(value: 0)
        gate.pause { idle.signal() }
        XCTAssertTrue(idle.waitOrFail("the pause with nothing running"))
        let done = Atomic<Bool>(false)
        let read = Task {
            _ = try await backend.readBytes(512, at: 0)
            done.store(true, ordering: .releasing)
        }
        await waitUntil("the read to be held") { gate.heldRequests == 1 }
        XCTAssertFalse(done.load(ordering: .acquiring))
        gate.resume()
        try await withBoundedWait("the resumed read") { try await read.value }
        XCTAssertTrue(done.load(ordering: .acquiring))
        XCTAssertEqual(gate.runningRequests, 0)
        await backend.close()
    }

    func testPauseAnswersOnlyOnceRunningRequestsFinished() async throws {
        let gate = PauseGate()
        await gate.enter()
        let idle = Atomic<Bool>(false)
        gate.pause { idle.store(true, ordering: .releasing) }
        XCTAssertFalse(idle.load(ordering: .acquiring))
        gate.leave()
        XCTAssertTrue(idle.load(ordering: .acquiring))
        gate.resume()
    }

    func testControlSocketAnswersPRAndX() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pause-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("ctl").path
        let layer = try PauseLayer(parameters: ["pause-control": path])
        defer { layer.control?.stop() }

        let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(client, 0)
        defer { close(client) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(client, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        XCTAssertEqual(connected, 0)
        func ask(_ command: String) -> String {
            _ = command.withCString { send(client, $0, 1, 0) }
            var answer: UInt8 = 0
            guard recv(client, &answer, 1, 0) == 1 else { return "nothing" }
            return String(UnicodeScalar(answer))
        }
        XCTAssertEqual(ask("p"), "P")
        XCTAssertTrue(layer.gate.isPaused)
        XCTAssertEqual(ask("?"), "X")
        XCTAssertEqual(ask("r"), "R")
        XCTAssertFalse(layer.gate.isPaused)
    }

    func testPauseControlIsRequiredAndMustBeUsable() {
        XCTAssertThrowsError(try PauseLayer(parameters: [:])) { error in
            XCTAssertTrue("\(error)".contains("pause-control="))
        }
        XCTAssertThrowsError(try PauseLayer(parameters: ["pause-control": "/nonexistent-dir/ctl"])) { error in
            XCTAssertTrue("\(error)".contains("pause-control=/nonexistent-dir/ctl"))
        }
    }
}
