import NBDCore
import NBDServeCommand
import XCTest

/// The filters of issue 21 on nbd-serve's command line: nbdkit's command lines build their layers,
/// `--help` lists them (cacheextents as deprecated), and bad values name the filter, the parameter
/// and what it accepts.
final class DataFilterCommandLineTests: XCTestCase {
    private func plan(_ line: String) throws -> ExportPlan {
        try ExportPlan(try ServeOptions.parse(line.split(separator: " ").map(String.init)))
    }

    static let names = [
        "nofilter", "readonly", "rotational", "swab", "checkwrite", "cacheextents", "extentlist", "partition",
        "count", "evil", "map", "scan", "spinning", "ddrescue",
    ]

    func testEveryFilterIsInTheCatalogAndCacheextentsSaysItIsDeprecated() {
        for name in Self.names {
            XCTAssertNotNil(ServeCatalog.filter(named: name), name)
        }
        XCTAssertTrue(ServeCatalog.filter(named: "cacheextents")?.summary.hasPrefix("deprecated (nbdkit 1.44)") == true)
    }

    func testNbdkitCommandLinesBuildTheirLayers() throws {
        let lines = [
            "--filter=nofilter memory 1G",
            "--filter=readonly memory 1G readonly-file=/tmp/ro",
            "--filter=rotational memory 1G rotational=false",
            "--filter=swab memory 1G swab-bits=64",
            "--filter=checkwrite memory 1G",
            "--filter=cacheextents memory 1G",
            "--filter=partition file disk.img partition=5 partition-sectorsize=4k",
            "--filter=count memory 1G",
            "--filter=evil memory 1G evil=stuck-wires evil-probability=1:1000 evil-stuck-probability=50% evil-seed=1",
            "--filter=map memory 1G map=0-511:512 map=512-1023:0",
            "--filter=scan memory 1G scan-ahead=false scan-clock=false scan-forever=true scan-size=4M",
            "--filter=spinning memory 1G heads=4 separate-heads=true min-seek-time=1ms",
            "--filter=multi-conn --filter=cow --filter=blocksize --filter=count --filter=retry memory 1G",
        ]
        for line in lines {
            let plan = try plan(line)
            let layers = try plan.makeLayers()
            XCTAssertEqual(layers.map(\.name), plan.filters.map(\.name), line)
        }
    }

    func testBadValuesNameTheFilterTheParameterAndWhatItAccepts() throws {
        let cases = [
            ("--filter=rotational memory 1G rotational=2", "filter 'rotational': rotational=2: expected a boolean"),
            ("--filter=swab memory 1G swab-bits=12", "filter 'swab': swab-bits=12: expected one of 8, 16, 32, 64"),
            ("--filter=partition memory 1G", "filter 'partition': partition=... is required"),
            ("--filter=partition memory 1G partition=-1", "filter 'partition': partition=-1"),
            ("--filter=extentlist memory 1G extentlist=/nonexistent", "filter 'extentlist': extentlist=/nonexistent"),
            ("--filter=evil memory 1G evil=x", "filter 'evil': evil=x: expected one of cosmic-rays"),
            ("--filter=map memory 1G map=1", "filter 'map': map=1: expected START-END:DEST"),
            ("--filter=scan memory 1G scan-size=3K", "filter 'scan': scan-size=3K: expected a power of 2"),
            ("--filter=spinning memory 1G heads=0", "filter 'spinning': heads=0: expected a whole number from 1 to 64"),
            ("--filter=ddrescue memory 1G", "filter 'ddrescue': ddrescue-mapfile=... is required"),
            ("--filter=readonly memory 1G readonly-file=", "filter 'readonly': readonly-file=: expected a path"),
        ]
        for (line, text) in cases {
            XCTAssertThrowsError(try plan(line).makeLayers(), line) { error in
                let message = (error as? CommandLineError)?.message ?? "\(error)"
                XCTAssertTrue(message.contains(text), "'\(message)' does not mention '\(text)'")
            }
        }
    }
}
