import Foundation
import NBDCore
import NBDStatsFilter
import NBDTestSupport
import XCTest

/// The `statsfile`, `statsappend` and `statsthreshold` parameters and the report file.
final class StatsLayerTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("stats-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func contents(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8)
    }

    /// Opens one connection through `layer`, runs reference section 4's first workload and closes it.
    func runWorkload(through layer: StatsLayer) async throws {
        let backend = TestMemoryBackend(capabilities: Capabilities(size: 1 << 20))
        let stack = try await layer.wrap(AnyBlockBackend(backend), for: ConnectionInfo())
        try await stack.writeString(String(repeating: "x", count: 4096), at: 0)
        try await stack.flush(flags: [])
        _ = try await stack.readBytes(4096, at: 0)
        await stack.close()
    }

    func testMissingStatsfileIsRefused() async {
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in _ = try StatsLayer(parameters: [:]) }, code: .invalidArgument)
        XCTAssertEqual(error?.message, "statsfile=... is required: the file the report is written to, for example statsfile=/tmp/stats.txt")
    }

    func testThresholdOutOfRangeIsRefused() async {
        for value in ["101", "-1", "1000"] {
            let error = await XCTAssertThrowsNBDError(
                { () throws(NBDError) in
                    _ = try StatsLayer(parameters: ["statsfile": self.path("s.txt"), "statsthreshold": value])
                },
                code: .invalidArgument)
            XCTAssertEqual(error?.message, "statsthreshold=\(value): expected an integer percentage from 0 to 100", value)
        }
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                _ = try StatsLayer(parameters: ["statsfile": self.path("s.txt"), "statsthreshold": "ninety"])
            },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.hasPrefix("statsthreshold=ninety") ?? false)
    }

    func testParametersAndDefaults() throws {
        let layer = try StatsLayer(parameters: ["statsfile": path("s.txt")])
        XCTAssertEqual(layer.collector.threshold, 95)
        XCTAssertEqual(layer.file?.appends, false)
        XCTAssertEqual(layer.file?.path, path("s.txt"))
        XCTAssertEqual(layer.name, "stats")
        XCTAssertEqual(StatsLayer.filterName, "stats")
        XCTAssertEqual(Set(StatsLayer.parameters.map(\.name)), [
                "statsfile", "statsappend", "statsthreshold", "statsformat", "statsinterval",
            ])

        let tuned = try StatsLayer(parameters: [
            "statsfile": path("t.txt"), "statsthreshold": "0", "statsappend": "yes",
        ])
        XCTAssertEqual(tuned.collector.threshold, 0)
        XCTAssertEqual(tuned.file?.appends, true)
        XCTAssertEqual(
            try StatsLayer(parameters: ["statsfile": path("u.txt"), "statsthreshold": "100"]).collector.threshold, 100)
    }

    func testInvalidStatsappendIsRefused() async {
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in
                _ = try StatsLayer(parameters: ["statsfile": self.path("s.txt"), "statsappend": "sometimes"])
            },
            code: .invalidArgument)
        XCTAssertTrue(error?.message.contains("statsappend") ?? false)
    }

    func testRelativeStatsfileIsMadeAbsolute() throws {
        // Climb out of the current directory to the root, so the file lands in our directory wherever
        // the tests run, without changing the process's working directory.
        let cwd = FileManager.default.currentDirectoryPath
        let depth = cwd.split(separator: "/").count
        let relative = String(repeating: "../", count: depth) + String(path("rel.txt").dropFirst())
        let layer = try StatsLayer(parameters: ["statsfile": relative])
        XCTAssertEqual(layer.file?.path, (cwd.hasSuffix("/") ? cwd : cwd + "/") + relative)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("rel.txt")))
    }

    func testFileIsCreatedOrTruncatedWhenTheLayerIsCreated() throws {
        let file = path("s.txt")
        try "old contents\n".write(toFile: file, atomically: false, encoding: .utf8)
        _ = try StatsLayer(parameters: ["statsfile": file])
        XCTAssertEqual(try contents(file), "", "truncated before the server starts, as nbdkit's get_ready does")

        let fresh = path("new.txt")
        _ = try StatsLayer(parameters: ["statsfile": fresh])
        XCTAssertTrue(FileManager.default.fileExists(atPath: fresh))
    }

    func testUnopenableStatsfileFailsWhenTheLayerIsCreated() async {
        let bad = path("missing-dir/s.txt")
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in _ = try StatsLayer(parameters: ["statsfile": bad]) }, code: .invalidArgument)
        XCTAssertTrue(error?.message.hasPrefix("open: \(bad)") ?? false, error?.message ?? "")
    }

    func testReportIsWrittenOnceAtShutdown() async throws {
        let file = path("s.txt")
        let layer = StatsLayer(
            collector: StatsCollector(clock: SteppingClock().clock), file: try StatsFile(path: file))
        try await runWorkload(through: layer)
        XCTAssertEqual(try contents(file), "", "nothing is written before shutdown")
        await layer.shutdown()
        let written = try contents(file)
        XCTAssertTrue(written.hasPrefix("total: 3 ops, "), written)
        XCTAssertTrue(written.contains("\nwrite: 1 ops, 0.000001 s, 4.00 KiB, "), written)
        XCTAssertTrue(written.contains("\nflush: 1 ops, "), written)
        await layer.shutdown()
        XCTAssertEqual(try contents(file), written, "a second shutdown writes nothing more")
    }

    func testStatsappendAddsACompleteBlockPerRun() async throws {
        let file = path("s.txt")
        try "previous run\n".write(toFile: file, atomically: false, encoding: .utf8)
        for _ in 0..<2 {
            let layer = try StatsLayer(parameters: ["statsfile": file, "statsappend": "true"])
            try await runWorkload(through: layer)
            await layer.shutdown()
        }
        let written = try contents(file)
        XCTAssertTrue(written.hasPrefix("previous run\ntotal: 3 ops, "), written)
        XCTAssertEqual(written.components(separatedBy: "total: 3 ops").count, 3, written)
    }

    func testThresholdZeroFromParametersWritesOnlySummaryLines() async throws {
        let file = path("s.txt")
        let layer = try StatsLayer(parameters: ["statsfile": file, "statsthreshold": "0"])
        try await runWorkload(through: layer)
        await layer.shutdown()
        let lines = try contents(file).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.map { String($0.prefix(while: { $0 != ":" })) }, ["total", "read", "write", "flush"])
    }

    func testLayerWithoutFileCountsInCode() async throws {
        let shared = StatsCollector()
        XCTAssertTrue(StatsLayer(shared).collector === shared)
        let layer = StatsLayer()
        try await runWorkload(through: layer)
        await layer.shutdown()
        XCTAssertNil(layer.file)
        XCTAssertEqual(layer.collector.snapshot().totalOperations, 3)
        XCTAssertTrue(layer.collector.report().hasPrefix("total: 3 ops, "))
        var text = ""
        layer.collector.report(to: &text)
        XCTAssertTrue(text.hasPrefix("total: 3 ops, "))
    }
}
