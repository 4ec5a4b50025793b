import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// One connection's view of the info export: fixed bytes (the export name or the client's address)
/// or a clock read at each request. Read-only.
public struct InfoBackend: BlockBackend {
    /// What this connection serves.
    public let mode: InfoMode
    public let capabilities: Capabilities
    /// The bytes served in the fixed-content modes.
    let contents: [UInt8]
    /// Where the uptime and conntime clocks start.
    let origin: ContinuousClock.Instant

    init(mode: InfoMode, contents: [UInt8], origin: ContinuousClock.Instant) {
        self.mode = mode
        self.contents = contents
        self.origin = origin
        let size = mode.isClock ? 12 : contents.count
        capabilities = Capabilities(
            size: UInt64(size), isWritable: false, canFlush: false, fua: .none, canTrim: false, canZero: false,
            canFastZero: false, cache: .emulated, canExtents: false, canMultiConn: true)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        // The server keeps requests inside the export; the clock modes make their 12 bytes now.
        let bytes = mode.isClock ? clockBytes() : contents
        bytes.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[Int(offset)..<Int(offset) + buffer.count]))
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "info: the export is read-only")
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "info: the export is read-only")
    }

    /// Seconds (8 bytes) and microseconds (4 bytes), big-endian.
    func clockBytes() -> [UInt8] {
        let seconds: UInt64
        let microseconds: UInt32
        if mode == .time {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            seconds = UInt64(now.tv_sec)
            microseconds = UInt32(now.tv_nsec / 1000)
        } else {
            let (whole, attoseconds) = (ContinuousClock.now - origin).components
            seconds = UInt64(max(whole, 0))
            microseconds = UInt32(max(attoseconds, 0) / 1_000_000_000_000)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(12)
        withUnsafeBytes(of: seconds.bigEndian) { bytes += $0 }
        withUnsafeBytes(of: microseconds.bigEndian) { bytes += $0 }
        return bytes
    }
}

extension InfoMode {
    /// Whether the mode serves a 12-byte clock.
    var isClock: Bool { self == .time || self == .uptime || self == .connTime }
}
