import NBDCore
import NBDFUAFilter
import NBDTestSupport
import XCTest

/// The FUA filter's effect on what reaches the layer below, observed through a ``RecordingFilter``
/// placed below it (the log filter's position in nbdkit's tests/test-fua.sh).
final class FUAFilterTests: XCTestCase {
    typealias Stack = FUAFilter<RecordingFilter<TestMemoryBackend>>

    /// A layer below that supports everything natively, as nbdkit's file plugin does.
    static let capable = Capabilities(size: 1 << 20)
    /// A layer below with neither FUA nor flush.
    static let bare = Capabilities(size: 1 << 20, canFlush: false, fua: .none)

    func makeStack(
        _ mode: FUAMode, below: Capabilities = capable, flushOnClose: Bool = false, readOnly: Bool = false
    ) throws(NBDError) -> (Stack, OperationLog, TestMemoryBackend) {
        let backend = TestMemoryBackend(capabilities: below)
        let log = OperationLog()
        let connection = ConnectionInfo(id: 1, isReadOnly: readOnly)
        let recorder = RecordingFilter(wrapping: backend, log: log, connection: connection.id)
        let filter = try FUAFilter(wrapping: recorder, mode: mode, flushOnClose: flushOnClose, connection: connection)
        return (filter, log, backend)
    }

    /// The log as `Command fua=N` lines, the form the reference traces use.
    func trace(_ log: OperationLog) -> [String] {
        log.all.map { "\($0.command) fua=\($0.flags.contains(.fua) ? 1 : 0)" }
    }

    /// Sends flush, write, FUA write, FUA zero and FUA trim, each directly to the filter (so even the
    /// FUA requests a validator would reject in none mode arrive), and returns what each request threw.
    func sendFullSequence(to filter: Stack) async -> [NBDError.Code?] {
        var outcomes: [NBDError.Code?] = []
        func attempt(_ body: () async throws(NBDError) -> Void) async {
            do {
                try await body()
                outcomes.append(nil)
            } catch {
                outcomes.append(error.code)
            }
        }
        await attempt { () throws(NBDError) in try await filter.flush(flags: []) }
        await attempt { () throws(NBDError) in try await filter.writeBytes([UInt8](repeating: 1, count: 65536), at: 0) }
        await attempt { () throws(NBDError) in
            try await filter.writeBytes([UInt8](repeating: 2, count: 65536), at: 0, flags: .fua)
        }
        await attempt { () throws(NBDError) in try await filter.zero(count: 65536, at: 65536, flags: .fua) }
        await attempt { () throws(NBDError) in try await filter.trim(count: 4096, at: 131072, flags: .fua) }
        return outcomes
    }

    // MARK: What reaches the layer below, per mode

    func testNoneModePassesFlushAndPlainWritesAndRejectsFUARequests() async throws {
        let (filter, log, _) = try makeStack(.none)
        let outcomes = await sendFullSequence(to: filter)
        XCTAssertEqual(trace(log), ["flush fua=0", "write fua=0"])
        XCTAssertEqual(outcomes, [nil, nil, .invalidArgument, .invalidArgument, .invalidArgument])
    }

    func testEmulateModeReplacesFUAWithAFlushAfterEachRequest() async throws {
        let (filter, log, _) = try makeStack(.emulate)
        let outcomes = await sendFullSequence(to: filter)
        XCTAssertEqual(
            trace(log),
            [
                "flush fua=0", "write fua=0", "write fua=0", "flush fua=0", "zero fua=0", "flush fua=0",
                "trim fua=0", "flush fua=0",
            ])
        XCTAssertEqual(outcomes, [nil, nil, nil, nil, nil])
    }

    func testNativeModePassesFUAAndFlushUnchanged() async throws {
        let (filter, log, _) = try makeStack(.native)
        _ = await sendFullSequence(to: filter)
        XCTAssertEqual(trace(log), ["flush fua=0", "write fua=0", "write fua=1", "zero fua=1", "trim fua=1"])
    }

    func testForceModeAddsFUAToEveryWriteAndNeverFlushes() async throws {
        let (filter, log, _) = try makeStack(.force)
        let outcomes = await sendFullSequence(to: filter)
        XCTAssertEqual(trace(log), ["write fua=1", "write fua=1", "zero fua=1", "trim fua=1"])
        XCTAssertEqual(outcomes, [nil, nil, nil, nil, nil], "the flush is answered without reaching the layer below")
    }

    func testPassModeChangesNothing() async throws {
        let (filter, log, _) = try makeStack(.pass)
        _ = await sendFullSequence(to: filter)
        XCTAssertEqual(trace(log), ["flush fua=0", "write fua=0", "write fua=1", "zero fua=1", "trim fua=1"])
    }

    func testDiscardModeDropsFUAAndFlushes() async throws {
        let (filter, log, _) = try makeStack(.discard)
        let outcomes = await sendFullSequence(to: filter)
        XCTAssertEqual(trace(log), ["write fua=0", "write fua=0", "zero fua=0", "trim fua=0"])
        XCTAssertEqual(outcomes, [nil, nil, nil, nil, nil])
    }

    /// The observed nbdkit traces of reference section 3 (write, FUA write, FUA zero, flush), sent the
    /// way qemu-io sends them: with FUA only when the filter advertises it.
    func testTracesMatchObservedNbdkitTraces() async throws {
        let expected: [FUAMode: [String]] = [
            .none: ["write fua=0", "write fua=0", "zero fua=0", "flush fua=0"],
            .emulate: ["write fua=0", "write fua=0", "flush fua=0", "zero fua=0", "flush fua=0", "flush fua=0"],
            .native: ["write fua=0", "write fua=1", "zero fua=1", "flush fua=0"],
            .pass: ["write fua=0", "write fua=1", "zero fua=1", "flush fua=0"],
            .force: ["write fua=1", "write fua=1", "zero fua=1"],
            .discard: ["write fua=0", "write fua=0", "zero fua=0"],
        ]
        for mode in FUAMode.allCases {
            let (filter, log, _) = try makeStack(mode)
            let fua: CommandFlags = filter.capabilities.fua == .none ? [] : .fua
            try await filter.writeBytes([UInt8](repeating: 1, count: 4096), at: 0)
            try await filter.writeBytes([UInt8](repeating: 2, count: 4096), at: 0, flags: fua)
            try await filter.zero(count: 4096, at: 4096, flags: fua)
            try await filter.flush(flags: [])
            XCTAssertEqual(trace(log), expected[mode], "fuamode=\(mode)")
        }
    }

    /// tests/test-fua.sh case (2): with emulation, flushes below minus client flushes plus FUA
    /// requests below equals the number of client FUA requests.
    func testEmulateModeFlushCountAccountsForEveryFUARequest() async throws {
        let (filter, log, _) = try makeStack(.emulate)
        try await filter.flush(flags: [])
        try await filter.writeBytes([UInt8](repeating: 1, count: 65536), at: 0, flags: .fua)
        try await filter.zero(count: 65536, at: 65536, flags: .fua)
        let flushes = log.count(of: .flush)
        let fuaBelow = log.all.filter { $0.flags.contains(.fua) }.count
        XCTAssertEqual(flushes - 1 + fuaBelow, 2)
    }

    func testEmulateModeFlushFailureFailsTheFUARequest() async throws {
        let (filter, _, backend) = try makeStack(.emulate)
        backend.failNext(.flush, with: NBDError(.ioError, "flush failed"))
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await filter.zero(count: 512, at: 0, flags: .fua) }, code: .ioError)
    }

    // MARK: Advertised capabilities

    func testAdvertisedCapabilitiesPerModeOverACapableLayer() throws {
        let expected: [FUAMode: (FUASupport, Bool)] = [
            .none: (.none, true), .emulate: (.emulated, true), .native: (.native, true),
            .force: (.native, true), .pass: (.native, true), .discard: (.native, true),
        ]
        for mode in FUAMode.allCases {
            let caps = try makeStack(mode).0.capabilities
            XCTAssertEqual(caps.fua, expected[mode]!.0, "fua for fuamode=\(mode)")
            XCTAssertEqual(caps.canFlush, expected[mode]!.1, "canFlush for fuamode=\(mode)")
        }
    }

    func testAdvertisedCapabilitiesPerModeOverALayerWithoutFUAOrFlush() throws {
        // Only the modes that need nothing below can be used here.
        let expected: [FUAMode: (FUASupport, Bool)] = [
            .none: (.none, false), .pass: (.none, false), .discard: (.native, true),
        ]
        for (mode, (fua, canFlush)) in expected {
            let caps = try makeStack(mode, below: Self.bare).0.capabilities
            XCTAssertEqual(caps.fua, fua, "fua for fuamode=\(mode)")
            XCTAssertEqual(caps.canFlush, canFlush, "canFlush for fuamode=\(mode)")
        }
    }

    func testPassModeAdvertisesEmulatedFUAFromBelow() throws {
        var below = Self.capable
        below.fua = .emulated
        XCTAssertEqual(try makeStack(.pass, below: below).0.capabilities.fua, .emulated)
    }

    func testForceModeAdvertisesFlushEvenWithoutFlushBelow() throws {
        var below = Self.capable
        below.canFlush = false
        XCTAssertTrue(try makeStack(.force, below: below).0.capabilities.canFlush)
    }

    func testEmulateModeMarksFUARequestsSlowWhenFlushIsSlowBelow() throws {
        var below = Self.capable
        below.slowOperations = [.flush]
        let caps = try makeStack(.emulate, below: below).0.capabilities
        XCTAssertEqual(caps.slowOperations, [.flush, .fuaRequests])
        XCTAssertEqual(try makeStack(.emulate).0.capabilities.slowOperations, [])
    }

    func testReadOnlyConnectionAdvertisesNoFUA() throws {
        for mode in FUAMode.allCases {
            XCTAssertEqual(try makeStack(mode, readOnly: true).0.capabilities.fua, .none, "fuamode=\(mode)")
        }
    }

    // MARK: Refusals at connection time

    func testEmulateModeIsRefusedWithoutFlushBelow() async {
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in _ = try self.makeStack(.emulate, below: Self.bare) }, code: .invalidArgument)
        XCTAssertEqual(error?.message, "fuamode 'emulate' requires flush support in the layer below")
    }

    func testNativeModeIsRefusedWithoutFUABelowAndTheMessageNamesNative() async {
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in _ = try self.makeStack(.native, below: Self.bare) }, code: .invalidArgument)
        XCTAssertEqual(error?.message, "fuamode 'native' requires FUA support in the layer below")
    }

    func testForceModeIsRefusedWithoutFUABelow() async {
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in _ = try self.makeStack(.force, below: Self.bare) }, code: .invalidArgument)
        XCTAssertEqual(error?.message, "fuamode 'force' requires FUA support in the layer below")
    }

    func testNativeAndForceAcceptEmulatedFUABelow() throws {
        var below = Self.capable
        below.fua = .emulated
        XCTAssertNoThrow(try makeStack(.native, below: below))
        XCTAssertNoThrow(try makeStack(.force, below: below))
    }

    func testFlushOnCloseIsRefusedWithoutFlushBelow() async {
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in _ = try self.makeStack(.pass, below: Self.bare, flushOnClose: true) },
            code: .invalidArgument)
        XCTAssertEqual(error?.message, "flush-on-close requires flush support in the layer below")
    }

    func testChecksAreSkippedForReadOnlyConnections() throws {
        for mode in FUAMode.allCases {
            XCTAssertNoThrow(
                try makeStack(mode, below: Self.bare, flushOnClose: true, readOnly: true), "fuamode=\(mode)")
        }
    }

    func testChecksAreSkippedWhenTheLayerBelowIsNotWritable() throws {
        var below = Self.bare
        below.isWritable = false
        for mode in FUAMode.allCases {
            XCTAssertNoThrow(try makeStack(mode, below: below, flushOnClose: true), "fuamode=\(mode)")
        }
    }

    // MARK: flush-on-close

    func testFlushOnCloseFlushesBelowBeforeClosing() async throws {
        let (filter, log, backend) = try makeStack(.none, flushOnClose: true)
        try await filter.writeBytes([1, 2, 3], at: 0)
        await filter.close()
        XCTAssertEqual(trace(log), ["write fua=0", "flush fua=0"])
        XCTAssertEqual(backend.closed, 1)
    }

    func testCloseWithoutFlushOnCloseDoesNotFlush() async throws {
        let (filter, log, backend) = try makeStack(.emulate)
        await filter.close()
        XCTAssertEqual(trace(log), [])
        XCTAssertEqual(backend.closed, 1)
    }

    func testFailedFlushOnCloseStillClosesTheLayerBelow() async throws {
        let (filter, _, backend) = try makeStack(.native, flushOnClose: true)
        backend.failNext(.flush, with: NBDError(.ioError, "gone"))
        await filter.close()
        XCTAssertEqual(backend.closed, 1)
    }

    func testFlushOnCloseOnReadOnlyConnectionWithoutFlushBelowSendsNothing() async throws {
        let (filter, log, backend) = try makeStack(.none, below: Self.bare, flushOnClose: true, readOnly: true)
        await filter.close()
        XCTAssertEqual(trace(log), [])
        XCTAssertEqual(backend.closed, 1)
    }

    // MARK: Parameters (FUALayer)

    func testLayerDefaultsToNoneWithoutParameters() throws {
        let layer = try FUALayer(parameters: [:])
        XCTAssertEqual(layer.mode, FUAMode.none)
        XCTAssertFalse(layer.flushOnClose)
        XCTAssertEqual(layer.name, "fua")
        XCTAssertEqual(FUALayer.filterName, "fua")
    }

    func testExplicitFuamodeNoneIsAccepted() throws {
        // nbdkit rejects this with "unknown fuamode 'none'" because its parser is not chained by else.
        XCTAssertEqual(try FUALayer(parameters: ["fuamode": "none"]).mode, FUAMode.none)
    }

    func testEveryModeParses() throws {
        for mode in FUAMode.allCases {
            XCTAssertEqual(try FUALayer(parameters: ["fuamode": mode.rawValue]).mode, mode)
        }
        XCTAssertEqual(try FUAMode.parse("Emulate"), .emulate)
    }

    func testUnknownModeIsRejectedWithTheAcceptedValues() async {
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in _ = try FUALayer(parameters: ["fuamode": "sometimes"]) }, code: .invalidArgument)
        XCTAssertEqual(
            error?.message,
            "fuamode=sometimes: expected one of none (the default), emulate, native, force, pass, discard")
    }

    func testFlushOnCloseAndItsAliasParse() async throws {
        XCTAssertTrue(try FUALayer(parameters: ["flush-on-close": "true"]).flushOnClose)
        XCTAssertTrue(try FUALayer(parameters: ["flush_on_close": "on"]).flushOnClose)
        XCTAssertFalse(try FUALayer(parameters: ["flush-on-close": "0"]).flushOnClose)
        let error = await XCTAssertThrowsNBDError(
            { () throws(NBDError) in _ = try FUALayer(parameters: ["flush-on-close": "maybe"]) }, code: .invalidArgument
        )
        XCTAssertTrue(error?.message.contains("flush-on-close") ?? false)
    }

    func testLayerDeclaresItsParameters() {
        XCTAssertEqual(Set(FUALayer.parameters.map(\.name)), ["fuamode", "flush-on-close", "flush_on_close"])
    }

    func testLayerWrapsAndRefusesConnections() async throws {
        let log = OperationLog()
        let backend = TestMemoryBackend(capabilities: Self.bare)
        let below = AnyBlockBackend(RecordingFilter(wrapping: backend, log: log, connection: 7))
        let layer = try FUALayer(parameters: ["fuamode": "discard"])
        let wrapped = try await layer.wrap(below, for: ConnectionInfo(id: 7))
        XCTAssertEqual(wrapped.capabilities.fua, .native)
        try await wrapped.writeBytes([9], at: 0, flags: .fua)
        try await wrapped.flush(flags: [])
        XCTAssertEqual(trace(log), ["write fua=0"])

        let emulate = try FUALayer(parameters: ["fuamode": "emulate"])
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in _ = try await emulate.wrap(below, for: ConnectionInfo(id: 8)) },
            code: .invalidArgument)
    }
}
