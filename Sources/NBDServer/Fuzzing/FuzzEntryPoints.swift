import NBDCore
import NBDWire
import Synchronization

/// Entry points for the libFuzzer targets in `Fuzz/` (see `Fuzz/run.sh`): they feed arbitrary bytes
/// through the real handshake and request loop, with a ``MemoryTransport`` instead of a socket and a
/// tiny in-memory backend, and trap when an invariant breaks.
///
/// Invariants checked on every input, beyond "does not crash":
/// - every backend the server opened is closed exactly once when the connection ends;
/// - the server never hands the backend a request outside the export (the backend traps);
/// - the server sends something (at least the greeting) unless sending failed at once.
package enum FuzzEntryPoints {
    /// Fuzzes the handshake: `data` is what the client sends after the server's greeting (client
    /// flags, then options). Any export opened by `NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME` is closed
    /// straight away.
    ///
    /// Each input runs three times: with TLS off, on and required. With TLS on or required,
    /// `NBD_OPT_STARTTLS` upgrades to a ``FuzzSecureSession`` that passes bytes through unchanged,
    /// so the paths after STARTTLS (options forgotten, a second STARTTLS, the refusals before it)
    /// are fuzzed too; its "handshake" reads one byte and fails when it is zero.
    package static func handshake(_ data: UnsafeRawBufferPointer) {
        for mode in TLSMode.allCases {
            handshake(data, tls: mode)
        }
    }

    private static func handshake(_ data: UnsafeRawBufferPointer, tls: TLSMode) {
        let counts = FuzzCounts()
        let provider = FuzzProvider(capabilities: Capabilities(size: 1 << 16, canExtents: true), counts: counts)
        let transport = MemoryTransport(input: Array(data), pauses: startTLSEnds(in: data))
        let socket = Socket(memory: transport)
        var configuration = contexts[0].configuration
        configuration.tls = tls
        configuration.secureTransport = FuzzSecureTransport(transport: transport)
        runBlocking { [configuration] in
            var reader = BufferedReader(socket: socket, capacity: configuration.receiveBufferSize)
            var output = OutputBuffer(capacity: 256)
            var handshake = Handshake(
                provider: provider, configuration: configuration, connectionID: 1, socket: socket,
                acceptsMultipleConnections: true, isShuttingDown: { false })
            if let export = await handshake.run(reader: &reader, output: &output) {
                precondition(
                    tls != .require || handshake.socket.isSecure, "an export was opened without TLS under require")
                await export.backend.close()
            }
        }
        counts.check()
        precondition(transport.sentByteCount >= 18, "the greeting was not sent")
    }

    /// The offsets just after each `NBD_OPT_STARTTLS` header without data in `data`: a real client
    /// sends nothing more until the server acknowledged it (and the server discards what it did).
    private static func startTLSEnds(in data: UnsafeRawBufferPointer) -> [Int] {
        let header: [UInt8] = [0x49, 0x48, 0x41, 0x56, 0x45, 0x4F, 0x50, 0x54, 0, 0, 0, 5, 0, 0, 0, 0]
        guard data.count >= header.count else { return [] }
        return (0...(data.count - header.count)).filter { start in
            (0..<header.count).allSatisfy { data[start + $0] == header[$0] }
        }.map { $0 + header.count }
    }

    /// Fuzzes a whole connection, handshake and transmission, as ``Connection/run()`` serves it.
    ///
    /// `data[0]` picks the set-up: bits 0-1 a canned handshake put before the rest of the input
    /// (0 none: the input carries its own handshake; 1 `GO`; 2 structured replies, `base:allocation`
    /// and `GO`; 3 `EXPORT_NAME`), bit 2 slow flush/zero/FUA operations (run on the pool), bit 3 a
    /// read-only server, bit 4 hole detection for reads of 512 bytes or more, bits 5-7 the most bytes
    /// one `recv` returns. `data[1]` picks the export: bits 0-3 the reply bytes after which sending
    /// fails (0: never), bit 4 block sizes 512/4096/64 KiB, bit 5 no extents, bit 6 emulated FUA and
    /// cache, bit 7 no trim or zero. The rest is what the client sends.
    package static func connection(_ data: UnsafeRawBufferPointer) {
        guard data.count >= 2 else { return }
        let setup = data[0]
        let exportSetup = data[1]
        var capabilities = Capabilities(size: 1 << 18, canExtents: exportSetup & 0x20 == 0)
        if setup & 0x04 != 0 { capabilities.slowOperations = [.flush, .zero, .fuaRequests] }
        if exportSetup & 0x10 != 0 {
            capabilities.blockSize = BlockSizeConstraints(minimum: 512, preferred: 4096, maximumPayload: 64 << 10)
        }
        if exportSetup & 0x40 != 0 {
            capabilities.fua = .emulated
            capabilities.cache = .emulated
        } else {
            capabilities.cache = .native
        }
        if exportSetup & 0x80 != 0 {
            capabilities.canTrim = false
            capabilities.canZero = false
            capabilities.canFastZero = false
        }
        let counts = FuzzCounts()
        let provider = FuzzProvider(capabilities: capabilities, counts: counts)
        let context = contexts[Int(setup >> 3) & 3]
        let chunkLimits = [Int.max, 1, 3, 16, 29, 100, 4096, 5000]
        let sendSteps = Int(exportSetup & 0x0F)
        var input = handshakePrefixes[Int(setup & 3)]
        input.append(contentsOf: data[2...])
        let transport = MemoryTransport(
            input: input, chunkLimit: chunkLimits[Int(setup >> 5)], sendLimit: sendSteps == 0 ? .max : sendSteps * 97)
        let connection = Connection(id: 1, socket: Socket(memory: transport), provider: provider, context: context)
        runBlocking { await connection.run() }
        counts.check()
    }

    // MARK: Set-up

    /// Servers' settings: index bit 0 read-only, bit 1 hole detection. Small buffers and limits so
    /// the large-payload paths are reached with small inputs.
    private static let contexts: [ServerContext] = (0..<4).map { index in
        ServerContext(
            configuration: ServerConfiguration(
                isReadOnly: index & 1 != 0, exportDescription: "fuzz", maximumPayload: 128 << 10,
                maximumDiscardedPayload: 1 << 20, maximumOptionLength: 4096, maximumConnections: 2,
                maximumSlowRequestsPerConnection: 2, slowOperationThreads: 1, receiveBufferSize: 4096,
                sendBatchSize: 8192, holeDetectionThreshold: index & 2 != 0 ? 512 : nil, handshakeTimeout: nil))
    }

    /// Client bytes that complete a handshake, put before the fuzzed transmission bytes.
    private static let handshakePrefixes: [[UInt8]] = {
        func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }
        func option(_ code: UInt32, _ data: [UInt8] = []) -> [UInt8] {
            be(ProtocolConstants.optionMagic) + be(code) + be(UInt32(data.count)) + data
        }
        let flags = be(ProtocolConstants.clientFixedNewstyle | ProtocolConstants.clientNoZeroes)
        let go = option(OptionCode.go, be(UInt32(0)) + be(UInt16(0)))
        let context = Array(baseAllocationContextName.utf8)
        let meta = option(
            OptionCode.setMetaContext, be(UInt32(0)) + be(UInt32(1)) + be(UInt32(context.count)) + context)
        return [
            [],
            flags + go,
            flags + option(OptionCode.structuredReply) + meta + go,
            flags + option(OptionCode.exportName),
        ]
    }()

    /// The thread the fuzzed connection runs on, as a real connection runs on its own.
    private static let executor: ThreadExecutor = {
        guard let executor = ThreadExecutor(name: "nbd-fuzz") else { fatalError("cannot start the fuzz thread") }
        return executor
    }()

    /// Runs `body` on the fuzz thread and waits for it (libFuzzer's callback is synchronous).
    private static func runBlocking(_ body: @escaping @Sendable () async -> Void) {
        let done = Semaphore()
        Task(executorPreference: executor) {
            await body()
            done.signal()
        }
        done.wait()
    }
}

/// Opens and closes of one fuzzed connection's backends.
private final class FuzzCounts: Sendable {
    let opens = Atomic<Int>(0)
    let closes = Atomic<Int>(0)

    func check() {
        let opened = opens.load(ordering: .acquiring)
        let closed = closes.load(ordering: .acquiring)
        precondition(opened == closed, "\(opened) backends opened but \(closed) closed")
    }
}

private struct FuzzProvider: BackendProvider {
    let capabilities: Capabilities
    let counts: FuzzCounts

    func open(_ connection: ConnectionInfo) async throws(NBDError) -> FuzzBackend {
        // Export names starting with "x" fail to open, so the error paths are reachable.
        if connection.exportName.hasPrefix("x") {
            throw NBDError(.notPermitted, "export '\(connection.exportName)' refused")
        }
        counts.opens.add(1, ordering: .relaxed)
        var caps = capabilities
        if connection.isReadOnly { caps = caps.readOnly }
        return FuzzBackend(capabilities: caps, counts: counts)
    }
}

/// A backend without storage that checks every request it receives is inside the export, and
/// fails some of them (offsets whose low 12 bits are 0xE00), so error replies are fuzzed too.
private final class FuzzBackend: BlockBackend {
    let capabilities: Capabilities
    let counts: FuzzCounts
    let closed = Atomic<Bool>(false)

    init(capabilities: Capabilities, counts: FuzzCounts) {
        self.capabilities = capabilities
        self.counts = counts
    }

    private func check(_ count: UInt64, at offset: UInt64, writing: Bool = false) throws(NBDError) {
        precondition(!closed.load(ordering: .relaxed), "a request reached a closed backend")
        precondition(count > 0 || !writing, "an empty write reached the backend")
        precondition(
            offset <= capabilities.size && count <= capabilities.size - offset,
            "request of \(count) bytes at \(offset) is outside the export of \(capabilities.size) bytes")
        precondition(!writing || capabilities.isWritable, "a write reached a read-only backend")
        if offset & 0xFFF == 0xE00 {
            let codes: [NBDError.Code] = [.ioError, .noSpace, .notSupported, .overflow, .outOfMemory]
            throw NBDError(codes[Int(offset >> 12) % codes.count], "injected failure at \(offset)")
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        try check(UInt64(buffer.count), at: offset)
        // A pattern instead of storage: the bytes are never inspected, but must be initialized.
        for index in buffer.indices { buffer[index] = UInt8(truncatingIfNeeded: offset &+ UInt64(index)) }
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check(UInt64(data.count), at: offset, writing: true)
        // Touch every byte so a payload pointer past its buffer is caught by the address sanitizer.
        var sum: UInt8 = 0
        for byte in data { sum &+= byte }
        _ = sum
    }

    func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check(count, at: offset, writing: true)
    }

    func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check(count, at: offset, writing: true)
    }

    func flush(flags: CommandFlags) async throws(NBDError) {
        try check(0, at: 0)
    }

    func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check(count, at: offset)
    }

    /// Data, zeroes and holes in 4 KiB runs; no extents at all for offsets whose low 12 bits are
    /// 0xD00 (a misbehaving stack the server must answer with an error).
    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try check(count, at: offset)
        if offset & 0xFFF == 0xD00 { return [] }
        var extents: [Extent] = []
        var position = offset
        let end = offset + count
        while position < end && extents.count < 64 {
            let next = min((position | 0xFFF) + 1, end)
            switch (position >> 12) % 3 {
            case 0: extents.append(.data(next - position))
            case 1: extents.append(Extent(length: next - position, flags: .zero))
            default: extents.append(.hole(next - position))
            }
            position = next
        }
        return extents
    }

    func close() async {
        let wasClosed = closed.exchange(true, ordering: .acquiringAndReleasing)
        precondition(!wasClosed, "a backend was closed twice")
        counts.closes.add(1, ordering: .relaxed)
    }
}

/// A "TLS" for the fuzz targets: the handshake reads one byte from the client's input (zero fails
/// it), and the session passes bytes through, so everything after STARTTLS stays reachable.
private struct FuzzSecureTransport: SecureTransport {
    let transport: MemoryTransport

    func startServerSession(
        descriptor: Int32, timeout: Duration?, reportProblem: @escaping @Sendable (String) -> Void
    ) throws(NBDError) -> any SecureSession {
        var byte: UInt8 = 1
        let received = withUnsafeMutableBytes(of: &byte) { transport.receive(into: $0) }
        guard received == 1, byte != 0 else { throw NBDError(.notPermitted, "fuzzed handshake failure") }
        return FuzzSecureSession(transport: transport)
    }
}

private final class FuzzSecureSession: SecureSession {
    let transport: MemoryTransport

    init(transport: MemoryTransport) {
        self.transport = transport
    }

    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int { transport.receive(into: buffer) }
    func send(_ bytes: UnsafeRawBufferPointer) -> Bool { transport.send(bytes) }
    func close() {}
}
