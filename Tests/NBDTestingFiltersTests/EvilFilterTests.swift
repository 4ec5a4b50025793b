import NBDCore
import NBDTestSupport
import NBDTestingFilters
import XCTest

/// The evil filter: how many bits each mode corrupts, and which.
final class EvilFilterTests: XCTestCase {
    private func differingBits(_ a: [UInt8], _ b: [UInt8]) -> Int {
        zip(a, b).reduce(0) { $0 + ($1.0 ^ $1.1).nonzeroBitCount }
    }

    private func layer(_ parameters: ParameterValues, over backend: TestMemoryBackend) async throws -> AnyBlockBackend {
        try await EvilLayer(parameters: parameters).wrap(AnyBlockBackend(backend), for: ConnectionInfo())
    }

    func testCosmicRaysFlipAboutTheExpectedNumberOfBitsDifferentlyEachRead() async throws {
        let backend = TestMemoryBackend(size: 1 << 17)
        let filter = try await layer(["evil": "cosmic-rays", "evil-probability": "1:100", "evil-seed": "7"], over: backend)
        let zeros = [UInt8](repeating: 0, count: 1 << 17)
        let first = try await filter.readBytes(1 << 17, at: 0)
        let second = try await filter.readBytes(1 << 17, at: 0)
        // 1 Mi bits at 1/100: about 10486 flips, a standard deviation of about 102.
        XCTAssertTrue((10000...11000).contains(differingBits(first, zeros)), "\(differingBits(first, zeros))")
        XCTAssertNotEqual(first, second)
        let below = try await backend.readBytes(16, at: 0)
        XCTAssertEqual(below, [UInt8](repeating: 0, count: 16), "below is unchanged")
    }

    func testStuckBitsAreTheSameOnEveryReadAndAtTheSameDiskPlaces() async throws {
        let backend = TestMemoryBackend(size: 1 << 20)
        let filter = try await layer(["evil-probability": "1%", "evil-seed": "3"], over: backend)
        let whole = try await filter.readBytes(65536, at: 0)
        let again = try await filter.readBytes(65536, at: 0)
        XCTAssertEqual(whole, again)
        let part = try await filter.readBytes(1000, at: 12345)
        XCTAssertEqual(part, Array(whole[12345..<13345]), "stuck places belong to the disk, not the request")
        // Stuck high shows on zeros; about half of 1% of 512 Ki bits.
        let high = whole.reduce(0) { $0 + $1.nonzeroBitCount }
        XCTAssertTrue((2200...3100).contains(high), "\(high)")
        // Stuck low shows on ones.
        try await backend.writeBytes([UInt8](repeating: 0xff, count: 65536), at: 0)
        let ones = try await filter.readBytes(65536, at: 0)
        XCTAssertTrue((2200...3100).contains(ones.reduce(0) { $0 + (8 - $1.nonzeroBitCount) }))
    }

    func testStuckWiresAreAtTheSamePlacesOfEachRequest() async throws {
        let backend = TestMemoryBackend(size: 1 << 20)
        let filter = try await layer(["evil": "stuck-wires", "evil-probability": "0.01", "evil-seed": "9"], over: backend)
        let a = try await filter.readBytes(4096, at: 0)
        let b = try await filter.readBytes(4096, at: 100_000)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, [UInt8](repeating: 0, count: 4096))
    }

    func testTinyProbabilityCorruptsNothingAndAStuckProbabilityOfZeroNeither() async throws {
        let backend = TestMemoryBackend(size: 1 << 20)
        for parameters: ParameterValues in [
            ["evil-probability": "1e-13"], ["evil-probability": "0.1", "evil-stuck-probability": "0"],
        ] {
            let filter = try await layer(parameters, over: backend)
            let read = try await filter.readBytes(65536, at: 0)
            XCTAssertEqual(read, [UInt8](repeating: 0, count: 65536), "\(parameters)")
        }
        let all = try await layer(["evil": "cosmic-rays", "evil-probability": "0.5"], over: backend)
        let flipped = try await all.readBytes(16, at: 0)
        XCTAssertEqual(flipped, [UInt8](repeating: 0xff, count: 16), "above 1/8 is every bit")
    }

    func testParametersAreRefusedNamingThemAndWhatTheyAccept() {
        for (key, value, expected) in [
            ("evil", "gamma-rays", "expected one of cosmic-rays, stuck-bits, stuck-wires"),
            ("evil-probability", "2", "expected a probability"), ("evil-probability", "1:0", "expected a probability"),
            ("evil-stuck-probability", "-1%", "expected a probability"), ("evil-seed", "x", "whole number"),
        ] {
            XCTAssertThrowsError(try EvilLayer(parameters: [key: value])) { error in
                XCTAssertTrue("\(error)".contains("\(key)=\(value)") && "\(error)".contains(expected), "\(error)")
            }
        }
        XCTAssertEqual(try EvilConfiguration.parseProbability("3.33:100000", for: "p"), 3.33e-5, accuracy: 1e-12)
        XCTAssertEqual(try EvilLayer(parameters: [:]).state.configuration.probability, 1e-8)
        XCTAssertEqual(try EvilLayer(parameters: ["evil": "stuck-wires"]).state.configuration.probability, 1e-6)
    }

    func testReadsNearTheEndOfAHugeExportDoNotOverflow() async throws {
        for mode in ["stuck-bits", "stuck-wires", "cosmic-rays"] {
            let layer = try EvilLayer(parameters: ["evil": mode, "evil-probability": "0.01", "evil-seed": "5"])
            let filter = try await layer.wrap(AnyBlockBackend(Zeroes()), for: ConnectionInfo())
            let read = try await filter.readBytes(65536, at: UInt64(Int64.max) - 65536)
            XCTAssertNotEqual(read, [UInt8](repeating: 0, count: 65536), mode)
        }
    }
}

/// An export of 2^63 - 1 bytes of zeroes.
private struct Zeroes: BlockBackend {
    var capabilities: Capabilities { Capabilities(size: UInt64(Int64.max)) }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
    }
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {}
}
