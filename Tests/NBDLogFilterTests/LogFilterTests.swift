import Foundation
import NBDBackends
import NBDCore
import NBDErrorFilter
import NBDLogFilter
import NBDTestSupport
import XCTest

final class LogFilterTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("log-filter-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private var logPath: String { directory.appendingPathComponent("nbd.log").path }

    /// The log's lines without their timestamps, after checking each has one.
    private func lines(file: StaticString = #filePath, line: UInt = #line) throws -> [String] {
        let text = try String(contentsOfFile: logPath, encoding: .utf8)
        XCTAssertTrue(text.hasSuffix("\n"), "the log ends with a whole line", file: file, line: line)
        let timestamp = try Regex(#"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} "#)
        return text.split(separator: "\n").map { entry in
            guard let match = entry.prefixMatch(of: timestamp) else {
                XCTFail("no timestamp: \(entry)", file: file, line: line)
                return String(entry)
            }
            return String(entry[match.range.upperBound...])
        }
    }

    func testEachRequestIsLoggedAtItsStartAndEndInNbdkitsFormat() async throws {
        let layers: [any FilterLayer] = [
            try LogLayer(parameters: ["logfile": logPath]),
            try ErrorInjectionLayer(parameters: ["error-pread": "ENOSPC", "error-pread-rate": "100%"]),
        ]
        let backend = try await FilterStack(layers, over: try MemoryBackendProvider(size: 1 << 20)).open(
            ConnectionInfo(exportName: "disk"))
        try await backend.writeBytes([UInt8](repeating: 1, count: 512), at: 1024, flags: .fua)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await backend.readBytes(512, at: 0) }, code: .noSpace)
        try await backend.zero(count: 4096, at: 8192, flags: [.noHole, .fastZero])
        try await backend.trim(count: 4096, at: 8192, flags: [])
        try await backend.flush(flags: [])
        _ = try await backend.extents(count: 65536, at: 0, flags: .requestOne)
        await backend.close()
        let logged = try lines()
        XCTAssertEqual(
            logged.first,
            #"connection=1 Connect export="disk" tls=0 size=0x100000 minsize=0x0 prefsize=0x0 maxsize=0x0 write=1 flush=1 rotational=0 trim=1 zero=2 fua=2 extents=1 cache=2 fast_zero=1"#
        )
        XCTAssertEqual(
            Array(logged.dropFirst().prefix(10)),
            [
                "connection=1 Write id=1 offset=0x400 count=0x200 fua=1 ...",
                "connection=1 ...Write id=1 return=0",
                "connection=1 Read id=2 offset=0x0 count=0x200 ...",
                "connection=1 ...Read id=2 return=-1 error=ENOSPC",
                "connection=1 Zero id=3 offset=0x2000 count=0x1000 trim=0 fua=0 fast=1 ...",
                "connection=1 ...Zero id=3 return=0",
                "connection=1 Trim id=4 offset=0x2000 count=0x1000 fua=0 ...",
                "connection=1 ...Trim id=4 return=0",
                "connection=1 Flush id=5 ...",
                "connection=1 ...Flush id=5 return=0",
            ])
        XCTAssertEqual(logged.dropFirst(11).first, "connection=1 Extents id=6 offset=0x0 count=0x10000 req_one=1 ...")
        XCTAssertTrue(
            logged.dropFirst(12).first?.hasPrefix(#"connection=1 ...Extents id=6 extents=(0x0 0x10000 "" "#) ?? false
                || logged.dropFirst(12).first?.hasPrefix(#"connection=1 ...Extents id=6 extents=(0x0 "#) ?? false,
            "\(logged)")
        XCTAssertTrue(logged.dropFirst(12).first?.hasSuffix(") return=0") ?? false, "\(logged)")
        XCTAssertEqual(logged.last, "connection=1 Disconnect transactions=6")
    }

    func testConcurrentConnectionsWriteWholeLinesWithIDsCountedPerConnection() async throws {
        let stack = FilterStack(
            [try LogLayer(parameters: ["logfile": logPath])], over: try MemoryBackendProvider(size: 1 << 20))
        var handles: [AnyBlockBackend] = []
        for _ in 0..<4 { handles.append(try await stack.open(ConnectionInfo())) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, handle) in handles.enumerated() {
                for request in 0..<50 {
                    group.addTask {
                        try await handle.writeBytes([UInt8(request)], at: UInt64(index * 4096 + request))
                    }
                }
            }
            try await group.waitForAll()
        }
        for handle in handles { await handle.close() }
        let pattern = try Regex(
            #"^connection=([1-4]) (\.\.\.)?Write id=(\d+)( offset=0x[0-9a-f]+ count=0x1 fua=0 \.\.\.| return=0)$"#)
        var starts: [String: Set<Int>] = [:]
        var ends: [String: Set<Int>] = [:]
        for line in try lines() where !line.contains("Connect") && !line.contains("Disconnect") {
            guard let match = line.wholeMatch(of: pattern), let connection = match.output[1].substring,
                let id = match.output[3].substring.flatMap({ Int($0) })
            else {
                XCTFail("malformed or interleaved line: \(line)")
                continue
            }
            if match.output[2].substring == nil {
                starts[String(connection), default: []].insert(id)
            } else {
                ends[String(connection), default: []].insert(id)
            }
        }
        for connection in ["1", "2", "3", "4"] {
            XCTAssertEqual(starts[connection], Set(1...50), "connection \(connection)")
            XCTAssertEqual(ends[connection], Set(1...50), "connection \(connection)")
        }
    }

    func testAnUnwritableLogfileIsAStartUpErrorNamingIt() {
        let path = directory.appendingPathComponent("missing/nbd.log").path
        XCTAssertThrowsError(try LogLayer(parameters: ["logfile": path])) { error in
            XCTAssertTrue("\(error)".contains("logfile=\(path)"), "\(error)")
            XCTAssertTrue("\(error)".contains("No such file or directory"), "\(error)")
        }
    }

    func testRequestsSucceedWhenTheLogCannotBeWrittenAnyMore() async throws {
        // /dev/full opens, and every write to it fails with ENOSPC: a full disk under the log.
        let layer = try LogLayer(parameters: ["logfile": "/dev/full"])
        let backend = try await FilterStack([layer], over: try MemoryBackendProvider(size: 4096)).open(ConnectionInfo())
        try await backend.writeString("still served", at: 0)
        let read = try await backend.readString(12, at: 0)
        XCTAssertEqual(read, "still served")
        XCTAssertGreaterThan(layer.file?.failedWriteCount ?? 0, 0, "the failed log writes are counted")
    }

    func testLogappendKeepsWhatWasThereAndTheDefaultTruncates() async throws {
        try "earlier\n".write(toFile: logPath, atomically: true, encoding: .utf8)
        _ = try await FilterStack(
            [try LogLayer(parameters: ["logfile": logPath, "logappend": "true"])],
            over: try MemoryBackendProvider(size: 4096)
        ).open(ConnectionInfo())
        XCTAssertTrue(try String(contentsOfFile: logPath, encoding: .utf8).hasPrefix("earlier\n"))
        _ = try LogLayer(parameters: ["logfile": logPath])
        XCTAssertEqual(try String(contentsOfFile: logPath, encoding: .utf8), "")
        XCTAssertThrowsError(try LogLayer(parameters: ["logfile": logPath, "logappend": "sometimes"])) { error in
            XCTAssertTrue("\(error)".contains("logappend"), "\(error)")
        }
    }

    func testWithoutALogfileTheFilterPassesRequestsThrough() async throws {
        let layer = try LogLayer(parameters: [:])
        XCTAssertNil(layer.file)
        let backend = try await FilterStack([layer], over: try MemoryBackendProvider(size: 4096)).open(ConnectionInfo())
        try await backend.writeString("x", at: 0)
        let read = try await backend.readString(1, at: 0)
        XCTAssertEqual(read, "x")
    }
}
