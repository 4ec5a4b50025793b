import Foundation
import NBDBackends
import NBDCore
import NBDTestSupport
import Synchronization
import XCTest

@testable import NBDConnectionFilters

final class LifecycleFilterTests: XCTestCase {
    func testExitLastRequestsShutdownWhenTheLastConnectionCloses() async throws {
        let layer = ExitLastLayer()
        let recorder = RecordingControl()
        let stack = FilterStack([layer], over: try MemoryBackendProvider(size: 4096))
        stack.attach(recorder.control)
        XCTAssertEqual(recorder.shutdownCount, 0, "nothing happens before the first connection")
        let first = try await stack.open(ConnectionInfo())
        let second = try await stack.open(ConnectionInfo())
        XCTAssertEqual(layer.openConnections, 2)
        await first.close()
        XCTAssertEqual(recorder.shutdownCount, 0)
        await second.close()
        XCTAssertEqual(recorder.shutdownCount, 1)
    }

    func testTimeLimitFailsRequestsWithESHUTDOWNAndDisconnectsOnceExceeded() async throws {
        let recorder = RecordingControl()
        let expired = TimeLimitLayer(limit: .nanoseconds(1))
        expired.attach(recorder.control)
        let stack = FilterStack([expired], over: try MemoryBackendProvider(size: 4096))
        let backend = try await stack.open(ConnectionInfo(id: 77))
        // The clock has moved on by at least a nanosecond since the open.
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await backend.readBytes(512, at: 0) }, code: .shutdown)
        XCTAssertEqual(recorder.disconnected.withLock { $0 }, [77])
        await backend.close()

        let unlimited = FilterStack([TimeLimitLayer(limit: .zero)], over: try MemoryBackendProvider(size: 4096))
        let open = try await unlimited.open(ConnectionInfo())
        _ = try await open.readBytes(512, at: 0)
        await open.close()
    }

    func testTimeLimitParameters() throws {
        XCTAssertEqual(try TimeLimitLayer(parameters: [:]).limit, .seconds(60))
        XCTAssertEqual(try TimeLimitLayer(parameters: ["time-limit": "1.5s"]).limit, .milliseconds(1500))
        XCTAssertThrowsError(try TimeLimitLayer(parameters: ["time-limit": "soon"])) { error in
            XCTAssertTrue("\(error)".contains("time-limit=soon"))
        }
    }

    func testOpenOnceOpensBelowOncePerExportAndClosesAtShutdown() async throws {
        let counter = OpenCounter()
        let stack = FilterStack(
            [OpenOnceLayer(), CountingLayer(counter: counter)], over: try MemoryBackendProvider(size: 4096))
        let a1 = try await stack.open(ConnectionInfo(exportName: "a"))
        let a2 = try await stack.open(ConnectionInfo(exportName: "a"))
        let b = try await stack.open(ConnectionInfo(exportName: "b"))
        XCTAssertEqual(counter.opens.load(ordering: .relaxed), 2)
        try await a1.writeBytes([7], at: 0)
        let seen = try await a2.readBytes(1, at: 0)
        XCTAssertEqual(seen, [7])
        await a1.close()
        await a2.close()
        await b.close()
        XCTAssertEqual(counter.closes.load(ordering: .relaxed), 0, "what was opened stays open")
        await stack.shutdown()
        XCTAssertEqual(counter.closes.load(ordering: .relaxed), 2)
    }

    func testOpenOnceForgetsAFailedOpen() async throws {
        let layer = OpenOnceLayer()
        let attempts = Atomic<Int>(0)
        let fail: OpenBelow = { _ async throws(NBDError) in
            attempts.wrappingAdd(1, ordering: .relaxed)
            throw NBDError(.ioError, "down")
        }
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await layer.open(for: ConnectionInfo(), below: fail) },
            code: .ioError)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await layer.open(for: ConnectionInfo(), below: fail) },
            code: .ioError)
        XCTAssertEqual(attempts.load(ordering: .relaxed), 2)
    }

    func testExitEvents() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("exitwhen-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("stop").path
        XCTAssertFalse(ExitEvent.fileCreated(path).hasHappened { _ in })
        XCTAssertTrue(ExitEvent.fileDeleted(path).hasHappened { _ in })
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
        XCTAssertTrue(ExitEvent.fileCreated(path).hasHappened { _ in })
        XCTAssertFalse(ExitEvent.fileDeleted(path).hasHappened { _ in })

        XCTAssertFalse(ExitEvent.processExits(getpid()).hasHappened { _ in })

        var pipe: [Int32] = [-1, -1]
        XCTAssertEqual(Glibc.pipe(&pipe), 0)
        defer { close(pipe[0]) }
        XCTAssertFalse(ExitEvent.pipeClosed(pipe[0]).hasHappened { _ in })
        close(pipe[1])
        XCTAssertTrue(ExitEvent.pipeClosed(pipe[0]).hasHappened { _ in })

        let reports = LockedValue<[String]>([])
        XCTAssertTrue(ExitEvent.script("exit 88").hasHappened { _ in })
        XCTAssertFalse(ExitEvent.script("exit 0").hasHappened { line in reports.withLock { $0.append(line) } })
        XCTAssertFalse(ExitEvent.script("exit 3").hasHappened { line in reports.withLock { $0.append(line) } })
        XCTAssertEqual(reports.withLock { $0.count }, 1, "status 1-87 is reported, 0 is not")
    }

    func testExitWhenRequestsShutdownAtAttachWhenTheEventAlreadyHappened() async throws {
        let layer = try ExitWhenLayer(parameters: ["exit-when-script": "exit 88", "exit-when-poll": "3600"])
        let requested = DispatchSemaphore(value: 0)
        layer.attach(ServerControl(requestShutdown: { requested.signal() }))
        XCTAssertTrue(requested.waitOrFail("exitwhen's shutdown request"))
        XCTAssertTrue(layer.hasTriggered)
        await layer.shutdown()
    }

    func testExitWhenChecksWhenAConnectionCloses() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("exitwhen-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("stop").path
        let layer = try ExitWhenLayer(parameters: ["exit-when-file-created": path, "exit-when-poll": "3600"])
        let requested = DispatchSemaphore(value: 0)
        let stack = FilterStack([layer], over: try MemoryBackendProvider(size: 4096))
        stack.attach(ServerControl(requestShutdown: { requested.signal() }))
        let backend = try await stack.open(ConnectionInfo())
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
        await backend.close()
        XCTAssertTrue(requested.waitOrFail("exitwhen's shutdown request after the close"))
        await stack.shutdown()
    }

    func testExitWhenRefusesBadParameters() {
        XCTAssertThrowsError(try ExitWhenLayer(parameters: ["exit-when-pipe-closed": "x"])) { error in
            XCTAssertTrue("\(error)".contains("exit-when-pipe-closed=x"))
        }
        XCTAssertThrowsError(try ExitWhenLayer(parameters: ["exit-when-process-exits": "0"])) { error in
            XCTAssertTrue("\(error)".contains("exit-when-process-exits=0"))
        }
        XCTAssertThrowsError(try ExitWhenLayer(parameters: ["exit-when-poll": "0"])) { error in
            XCTAssertTrue("\(error)".contains("exit-when-poll=0"))
        }
    }
}
