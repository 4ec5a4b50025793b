import NBDCore

/// One connection to an sh or eval export: every request runs the script's method (`pread`,
/// `pwrite`, ...) with nbdkit's arguments, the handle `open` printed first.
///
/// Every operation runs a process, on a thread of its own, and suspends until it exits; so all
/// operations are declared in `Capabilities.suspendingOperations`, and the server keeps several
/// in flight per connection (as many as the thread model lets run).
public struct ScriptBackend: BlockBackend {
    public let capabilities: Capabilities
    let host: ScriptHost
    /// What `open` printed, without its final newline: the scripts' `$2`.
    let handle: String
    /// The lock the thread model asks for, or `nil` for parallel.
    let gate: ScriptGate?
    /// Whether `can_zero` said yes; otherwise zeroes are written with `pwrite`, as nbdkit does.
    let zeroIsNative: Bool

    /// The largest pwrite sent when a zero request is emulated.
    static let zeroChunk = 1 << 20

    init(host: ScriptHost, handle: String, gate: ScriptGate?, zeroIsNative: Bool, capabilities: Capabilities) {
        self.host = host
        self.handle = handle
        self.gate = gate
        self.zeroIsNative = zeroIsNative
        self.capabilities = capabilities
    }

    /// nbdkit's flags argument: `fua`, `may_trim`, `req_one`, `fast`, comma-separated, in that order.
    static func flagsArgument(_ flags: CommandFlags, mayTrim: Bool = false) -> String {
        var words: [String] = []
        if flags.contains(.fua) { words.append("fua") }
        if mayTrim { words.append("may_trim") }
        if flags.contains(.requestOne) { words.append("req_one") }
        if flags.contains(.fastZero) { words.append("fast") }
        return words.joined(separator: ",")
    }

    private func unexpected(_ method: String, _ reply: ScriptReply) -> NBDError {
        switch reply {
        case .missing: NBDError(.ioError, "\(host.displayName): the \(method) method is required")
        default:
            NBDError(
                .ioError, "\(host.displayName): \(method) exited with status 3 (false), which only can_* methods may")
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        let reply = try await host.call(
            "pread", [handle, String(buffer.count), String(offset)], outputLimit: buffer.count, gate: gate)
        guard case .ok(let data) = reply else { throw unexpected("pread", reply) }
        guard data.count == buffer.count else {
            throw NBDError(
                .ioError,
                "\(host.displayName): pread printed \(data.count) bytes, but \(buffer.count) were asked for at offset \(offset)"
            )
        }
        data.withUnsafeBytes { buffer.copyMemory(from: $0) }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let reply = try await host.call(
            "pwrite", [handle, String(data.count), String(offset), Self.flagsArgument(flags)], input: data, gate: gate)
        guard case .ok = reply else {
            throw reply == .missing
                ? NBDError(.ioError, "\(host.displayName): pwrite is not implemented") : unexpected("pwrite", reply)
        }
    }

    /// The script's `zero` when `can_zero` said yes; when it is missing or fails with ENOTSUP, or
    /// `can_zero` said no, zeroes are written with `pwrite` (unless the client asked for a fast
    /// zero, which then fails with ENOTSUP at once), as nbdkit does.
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        if zeroIsNative {
            do throws(NBDError) {
                let reply = try await host.call(
                    "zero",
                    [
                        handle, String(count), String(offset),
                        Self.flagsArgument(flags, mayTrim: !flags.contains(.noHole)),
                    ],
                    gate: gate)
                switch reply {
                case .ok: return
                case .missing: break
                case .no: throw unexpected("zero", reply)
                }
            } catch {
                // ENOTSUP asks for the pwrite fallback; a fast zero reports it instead.
                guard error.code == .notSupported, !flags.contains(.fastZero) else { throw error }
            }
        }
        if flags.contains(.fastZero) {
            throw NBDError(.notSupported, "\(host.displayName): zeroing is emulated with pwrite, which is not fast")
        }
        let zeroes = UnsafeMutableRawBufferPointer.allocate(
            byteCount: Int(min(count, UInt64(Self.zeroChunk))), alignment: 64)
        defer { zeroes.deallocate() }
        zeroes.initializeMemory(as: UInt8.self, repeating: 0)
        var done: UInt64 = 0
        while done < count {
            let length = Int(min(UInt64(zeroes.count), count - done))
            let last = done + UInt64(length) == count
            try await write(
                UnsafeRawBufferPointer(rebasing: zeroes[0..<length]), at: offset + done,
                flags: last ? flags.intersection(.fua) : [])
            done += UInt64(length)
        }
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let reply = try await host.call(
            "trim", [handle, String(count), String(offset), Self.flagsArgument(flags)], gate: gate)
        if reply == .no { throw unexpected("trim", reply) }
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        let reply = try await host.call("flush", [handle], gate: gate)
        if reply == .no { throw unexpected("flush", reply) }
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let reply = try await host.call("cache", [handle, String(count), String(offset)], gate: gate)
        if reply == .no { throw unexpected("cache", reply) }
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        let reply = try await host.call(
            "extents", [handle, String(count), String(offset), Self.flagsArgument(flags)], outputLimit: 64 << 20,
            gate: gate)
        switch reply {
        case .ok(let output):
            return try ExtentList.parse(output, count: count, offset: offset, context: "\(host.displayName): extents")
        case .missing:
            throw NBDError(.ioError, "\(host.displayName): can_extents said yes, but there is no extents method")
        case .no:
            throw unexpected("extents", reply)
        }
    }

    /// Runs `close`; its errors are ignored, as in nbdkit.
    public func close() async {
        _ = try? await host.call("close", [handle], gate: gate)
    }
}
