import NBDCore

/// nbdkit's fua filter for one connection: changes how FUA (force unit access) and flush requests
/// reach the layer below, to test clients against servers with different FUA support or to trade
/// safety for speed. See ``FUAMode`` for what each mode does and `Documentation/FUAFilter.md`.
///
/// ```swift
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, connection in
///         try FUAFilter(wrapping: next, mode: .emulate, flushOnClose: true, connection: connection)
///     }
/// ```
///
/// The filter does not intercept reads, cache or extents requests.
public struct FUAFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities with `fua`, `canFlush` and `slowOperations` as ``mode`` advertises
    /// them (see ``FUAMode``).
    public let capabilities: Capabilities
    /// The mode requests are handled in.
    public let mode: FUAMode
    /// Whether ``close()`` flushes the layer below first.
    public let flushOnClose: Bool

    /// Wraps `next` for one connection, checking that the layer below can do what `mode` needs.
    ///
    /// Throwing refuses the connection, as nbdkit's `prepare` does:
    /// - ``FUAMode/emulate`` needs flush support below;
    /// - ``FUAMode/native`` and ``FUAMode/force`` need FUA support below (emulated or native);
    /// - `flushOnClose` needs flush support below.
    ///
    /// None of these are checked when the connection is read-only (`connection.isReadOnly`, or the layer
    /// below is not writable): no write can arrive, so the mode has no effect, and FUA is not advertised.
    public init(
        wrapping next: Next, mode: FUAMode = .none, flushOnClose: Bool = false, connection: ConnectionInfo
    ) throws(NBDError) {
        let below = next.capabilities
        let readOnly = connection.isReadOnly || !below.isWritable
        if !readOnly {
            switch mode {
            case .emulate where !below.canFlush:
                throw NBDError(.invalidArgument, "fuamode 'emulate' requires flush support in the layer below")
            case .native where below.fua == .none, .force where below.fua == .none:
                // nbdkit names 'force' in this message for native mode too; say which mode it was.
                throw NBDError(.invalidArgument, "fuamode '\(mode)' requires FUA support in the layer below")
            default:
                break
            }
            if flushOnClose && !below.canFlush {
                throw NBDError(.invalidArgument, "flush-on-close requires flush support in the layer below")
            }
        }
        self.next = next
        self.mode = mode
        self.flushOnClose = flushOnClose
        self.capabilities = Self.capabilities(for: mode, below: below, readOnly: readOnly)
    }

    /// The capabilities `mode` advertises over a layer that advertises `below`.
    static func capabilities(for mode: FUAMode, below: Capabilities, readOnly: Bool) -> Capabilities {
        var caps = below
        switch mode {
        case .none:
            caps.fua = .none
        case .emulate:
            caps.fua = .emulated
            // A FUA request now costs a flush below, so it is as slow as that flush.
            if below.slowOperations.contains(.flush) { caps.slowOperations.insert(.fuaRequests) }
        case .native:
            caps.fua = .native
        case .force:
            caps.fua = .native
            caps.canFlush = true
            // Every write-like request carries FUA below; the flush itself never reaches the layer below.
            if below.slowOperations.contains(.fuaRequests) {
                caps.slowOperations.formUnion([.write, .zero, .trim])
            }
            caps.slowOperations.remove(.flush)
        case .pass:
            break
        case .discard:
            caps.fua = .native
            caps.canFlush = true
            caps.slowOperations.subtract([.flush, .fuaRequests])
        }
        // As nbdkit's backend does: a connection that cannot write has no FUA to advertise.
        if readOnly { caps.fua = .none }
        return caps
    }

    /// The flags to send down for a write-like request, and whether a flush must follow it.
    @inlinable
    func rewrite(_ flags: CommandFlags) throws(NBDError) -> (flags: CommandFlags, flushAfter: Bool) {
        switch mode {
        case .none:
            // FUA was not advertised, so the request validator rejects it before it gets here; a caller
            // that bypasses the validator gets the same answer rather than silently different semantics.
            if flags.contains(.fua) {
                throw NBDError(.invalidArgument, "FUA flag used but fuamode is 'none' (FUA is not advertised)")
            }
            return (flags, false)
        case .emulate:
            return flags.contains(.fua) ? (flags.subtracting(.fua), true) : (flags, false)
        case .native, .pass:
            return (flags, false)
        case .force:
            return (flags.union(.fua), false)
        case .discard:
            return (flags.subtracting(.fua), false)
        }
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        let (passed, flushAfter) = try rewrite(flags)
        try await next.write(data, at: offset, flags: passed)
        // The NBD spec requires the FUA reply to wait until the data is durable: flush before replying.
        if flushAfter { try await next.flush(flags: []) }
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let (passed, flushAfter) = try rewrite(flags)
        try await next.zero(count: count, at: offset, flags: passed)
        if flushAfter { try await next.flush(flags: []) }
    }

    @inlinable
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let (passed, flushAfter) = try rewrite(flags)
        try await next.trim(count: count, at: offset, flags: passed)
        if flushAfter { try await next.flush(flags: []) }
    }

    @inlinable
    public func flush(flags: CommandFlags) async throws(NBDError) {
        switch mode {
        case .force:
            // Every write already went down with FUA, so there is nothing left to make durable.
            return
        case .discard:
            // Dropped on purpose: the point of this mode is to ignore durability requests.
            return
        case .none, .emulate, .native, .pass:
            try await next.flush(flags: flags)
        }
    }

    /// Flushes the layer below first when ``flushOnClose`` is set (nbdkit's `finalize`), then closes it.
    ///
    /// `close()` cannot report an error, so a failed final flush is dropped; the client has already
    /// disconnected and cannot be told either. On a read-only connection over a layer without flush,
    /// where the check was skipped, there is nothing to flush and none is sent.
    public func close() async {
        if flushOnClose && next.capabilities.canFlush {
            try? await next.flush(flags: [])
        }
        await next.close()
    }
}
