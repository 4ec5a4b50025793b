import NBDBackends
import NBDBlockSizeFilters
import NBDCore
import NBDTestSupport
import XCTest

final class BlockSizePolicyFilterTests: XCTestCase {
    private func stack(_ parameters: ParameterValues, size: UInt64 = 1 << 20, log: OperationLog = OperationLog())
        async throws -> AnyBlockBackend
    {
        let layers: [any FilterLayer] = [try BlockSizePolicyLayer(parameters: parameters), RecordingLayer(log: log)]
        return try await FilterStack(layers, over: try MemoryBackendProvider(size: size)).open(ConnectionInfo())
    }

    func testAdvertisesTheConfiguredSizesAndLeavesEnforcementToTheFilter() async throws {
        let all = try await stack(["blocksize-minimum": "512", "blocksize-preferred": "64K", "blocksize-maximum": "1M"])
        XCTAssertEqual(all.capabilities.blockSize.minimum, 512)
        XCTAssertEqual(all.capabilities.blockSize.preferred, 65536)
        XCTAssertEqual(all.capabilities.blockSize.maximumPayload, 1 << 20)
        XCTAssertFalse(
            all.capabilities.blockSize.isEnforced, "the server must let misaligned requests reach the policy")
        XCTAssertNoThrow(
            try RequestValidator(capabilities: all.capabilities).validate(.read, offset: 1, length: 3, flags: []))
        // Only the preferred size given, over a layer that states none: the protocol's defaults fill in.
        let some = try await stack(["blocksize-preferred": "32K"])
        XCTAssertEqual(some.capabilities.blockSize.minimum, 1)
        XCTAssertEqual(some.capabilities.blockSize.preferred, 32768)
        XCTAssertEqual(some.capabilities.blockSize.maximumPayload, UInt32.max)
        let none = try await stack([:])
        XCTAssertEqual(none.capabilities.blockSize.minimum, 1)
        XCTAssertEqual(none.capabilities.blockSize.preferred, 4096)
    }

    func testAllowPassesMisalignedRequestsDown() async throws {
        let log = OperationLog()
        let backend = try await stack(["blocksize-minimum": "512"], log: log)
        try await backend.writeBytes([1, 2, 3], at: 7)
        XCTAssertEqual(log.all.map(\.description), ["c\(log.all[0].connection) write 3@7 fua=0"])
    }

    /// nbdkit 1.32 answers a 128 KiB read over `blocksize-maximum=64K` under `allow`: the advertised
    /// maximum is a hint; what the layer below accepts is the limit.
    func testAllowServesRequestsLargerThanTheAdvertisedMaximumUpToWhatTheLayerBelowAccepts() async throws {
        let log = OperationLog()
        let backend = try await stack(["blocksize-maximum": "64K"], log: log)
        XCTAssertEqual(backend.capabilities.blockSize.maximumPayload, 64 << 10, "advertised")
        XCTAssertEqual(backend.capabilities.blockSize.acceptedMaximumPayload, 32 << 20, "the memory backend's limit")
        let validator = RequestValidator(capabilities: backend.capabilities)
        XCTAssertNoThrow(try validator.validate(.read, offset: 0, length: 128 << 10, flags: []))
        XCTAssertThrowsError(try validator.validate(.read, offset: 0, length: (32 << 20) + 1, flags: []))
        _ = try await backend.readBytes(128 << 10, at: 0)
        XCTAssertEqual(log.all.map(\.count), [128 << 10], "the whole read reached the layer below")

        // Over a layer that accepts only 64 KiB, that stays the limit whatever the policy advertises.
        let provider = TestProvider(
            capabilities: Capabilities(size: 1 << 20, blockSize: BlockSizeConstraints(maximumPayload: 64 << 10)))
        let small = try await FilterStack([try BlockSizePolicyLayer(parameters: ["blocksize-maximum": "16K"])], over: provider)
            .open(ConnectionInfo())
        XCTAssertEqual(small.capabilities.blockSize.maximumPayload, 16 << 10)
        XCTAssertEqual(small.capabilities.blockSize.acceptedMaximumPayload, 64 << 10)
        XCTAssertThrowsError(
            try RequestValidator(capabilities: small.capabilities).validate(.write, offset: 0, length: 128 << 10, flags: []))
    }

    func testAllowStillKeepsRequestsTheLayerBelowDeclaredInvalidFromIt() async throws {
        let log = OperationLog()
        let provider = TestProvider(
            capabilities: Capabilities(size: 1 << 20, blockSize: BlockSizeConstraints(minimum: 512)))
        let layers: [any FilterLayer] = [
            try BlockSizePolicyLayer(parameters: ["blocksize-minimum": "4K"]), RecordingLayer(log: log),
        ]
        let backend = try await FilterStack(layers, over: provider).open(ConnectionInfo())
        XCTAssertEqual(backend.capabilities.blockSize.minimum, 4096)
        try await backend.writeBytes([UInt8](repeating: 1, count: 512), at: 512)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in try await backend.writeBytes([1], at: 0) }, code: .invalidArgument)
        XCTAssertEqual(log.all.map(\.offset), [512], "only the request aligned for the layer below reached it")
    }

    func testErrorFailsMisalignedAndOversizedRequestsWithEINVALBeforeTheLayerBelow() async throws {
        let log = OperationLog()
        let backend = try await stack(
            ["blocksize-minimum": "512", "blocksize-maximum": "64K", "blocksize-error-policy": "error"], log: log)
        let rejected: [(String, () async throws(NBDError) -> Void)] = [
            ("offset", { () async throws(NBDError) in _ = try await backend.readBytes(512, at: 1) }),
            ("short", { () async throws(NBDError) in try await backend.writeBytes([1], at: 0) }),
            ("length", { () async throws(NBDError) in try await backend.zero(count: 700, at: 0, flags: []) }),
            ("large", { () async throws(NBDError) in _ = try await backend.readBytes(128 << 10, at: 0) }),
            ("trim", { () async throws(NBDError) in try await backend.trim(count: 100, at: 512, flags: []) }),
        ]
        for (name, request) in rejected {
            await XCTAssertThrowsNBDError(request, code: .invalidArgument, name)
        }
        XCTAssertTrue(log.all.isEmpty, "rejected requests never reach the layer below: \(log.all)")
        // Zero and trim may be larger than the maximum: it limits payloads only.
        try await backend.zero(count: 1 << 20, at: 0, flags: [])
        _ = try await backend.readBytes(512, at: 512)
    }

    func testErrorLetsTheUnalignedTailOfTheImageBeReachedAndStrictErrorDoesNot() async throws {
        let size: UInt64 = 4096 + 100
        let loose = try await stack(["blocksize-minimum": "512", "blocksize-error-policy": "error"], size: size)
        _ = try await loose.readBytes(100, at: 4096)
        let strict = try await stack(
            ["blocksize-minimum": "512", "blocksize-error-policy": "strict-error"], size: size)
        await XCTAssertThrowsNBDError(
            { () async throws(NBDError) in _ = try await strict.readBytes(100, at: 4096) }, code: .invalidArgument)
    }

    func testExtentsAreReportedInWholeBlocks() async throws {
        let backend = try await stack(["blocksize-minimum": "4K", "blocksize-error-policy": "error"])
        try await backend.writeBytes([UInt8](repeating: 1, count: 4096), at: 64 << 10)
        let extents = try await backend.extents(count: 1 << 20, at: 0, flags: [])
        XCTAssertTrue(extents.allSatisfy { $0.length % 4096 == 0 }, "\(extents)")
    }

    func testWriteDisconnectIsAdvertisedToTheServer() async throws {
        let backend = try await stack(["blocksize-write-disconnect": "32M"])
        XCTAssertEqual(backend.capabilities.blockSize.writeDisconnectLimit, 32 << 20)
    }

    func testParametersAreCheckedAndErrorsNameThem() {
        for (parameters, name) in [
            (["blocksize-minimum": "1000"] as ParameterValues, "blocksize-minimum"),
            (["blocksize-minimum": "128K"], "blocksize-minimum"),
            (["blocksize-preferred": "256"], "blocksize-preferred"),
            (["blocksize-minimum": "4K", "blocksize-maximum": "6K"], "blocksize-maximum"),
            (["blocksize-minimum": "8K", "blocksize-preferred": "4K"], "blocksize-minimum"),
            (["blocksize-preferred": "64K", "blocksize-maximum": "32K"], "blocksize-preferred"),
            (["blocksize-minimum": "4K", "blocksize-write-disconnect": "4K"], "blocksize-write-disconnect"),
            (["blocksize-error-policy": "maybe"], "blocksize-error-policy"),
        ] {
            XCTAssertThrowsError(try BlockSizePolicyLayer(parameters: parameters), "\(parameters)") { error in
                XCTAssertTrue("\(error)".contains(name), "\(error) does not name \(name)")
            }
        }
    }
}
