import NBDCore
import NBDServeCommand
import NBDServer
import XCTest

/// The range, feature and flow filters on nbd-serve's command line: nbdkit's command lines build,
/// and bad values name the filter and the parameter.
final class NewFilterCommandLineTests: XCTestCase {
    private func plan(_ line: String) throws -> ExportPlan {
        try ExportPlan(try ServeOptions.parse(line.split(separator: " ").map(String.init)))
    }

    func testNbdkitCommandLinesBuildTheirLayers() throws {
        let lines = [
            "--filter=offset file disk.img offset=1M range=100M",
            "--filter=truncate --filter=offset memory 1G round-up=4K offset=512",
            "--filter=protect memory 1G protect=0-0x1bd protect=~1048576-2097151",
            "--filter=nozero memory 1G zeromode=emulate fastzeromode=slow",
            "--filter=nocache memory 1G cachemode=nop",
            "--filter=noextents memory 1G",
            "--filter=noparallel memory 1G serialize=all-requests",
            "--filter=delay memory 1G rdelay=100ms wdelay=1 delay-fast-zero=false",
            "--filter=rate memory 64M rate=1M connection-rate=50K burstiness=4",
            "--filter=limit memory 1G limit=4",
        ]
        for line in lines {
            let plan = try plan(line)
            let layers = try plan.makeLayers()
            XCTAssertEqual(layers.map(\.name), plan.filters.map(\.name), line)
        }
        let routed = try plan("--filter=truncate --filter=offset memory 1G round-up=4K offset=512")
        XCTAssertEqual(routed.filters[0].parameters["round-up"], "4K")
        XCTAssertEqual(routed.filters[1].parameters["offset"], "512")
        XCTAssertEqual(routed.backendParameters["size"], "1G")
    }

    func testBadValuesNameTheFilterAndTheParameter() throws {
        let cases = [
            ("--filter=truncate memory 1G round-up=1000", "filter 'truncate': round-up=1000"),
            ("--filter=protect memory 1G protect=5", "filter 'protect': protect=5"),
            ("--filter=nozero memory 1G zeromode=off", "filter 'nozero': zeromode=off: expected one of"),
            ("--filter=nocache memory 1G cachemode=yes", "filter 'nocache': cachemode=yes"),
            ("--filter=noparallel memory 1G serialize=all", "filter 'noparallel': serialize=all"),
            ("--filter=delay memory 1G delay-write=soon", "filter 'delay': delay-write=soon"),
            ("--filter=rate memory 1G rate=0", "filter 'rate': rate=0: a rate cannot be 0"),
            ("--filter=limit memory 1G limit=many", "filter 'limit': limit=many"),
        ]
        for (line, text) in cases {
            XCTAssertThrowsError(try plan(line).makeLayers(), line) { error in
                let message = (error as? CommandLineError)?.message ?? "\(error)"
                XCTAssertTrue(message.contains(text), "'\(message)' does not mention '\(text)'")
            }
        }
    }
}
