import NBDCore

/// nbdkit's nozero filter for one connection: disables or degrades write-zeroes and fast zero, to
/// compare clients that write zeroes explicitly with ones that do not, or to test client fallbacks.
///
/// ```swift
/// // Advertise write-zeroes, but carry it out as plain writes and fail every fast zero.
/// let export = try FileBackendProvider(path: "disk.img")
///     .wrapped { next, connection in
///         try NoZeroFilter(wrapping: next, zeroMode: .emulate, connection: connection)
///     }
/// ```
///
/// See ``ZeroMode`` and ``FastZeroMode`` for what each mode advertises and does.
public struct NoZeroFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities with `canZero` and `canFastZero` as the modes advertise them.
    public let capabilities: Capabilities
    /// How zero requests are handled.
    public let zeroMode: ZeroMode
    /// How the fast-zero flag is handled.
    public let fastZeroMode: FastZeroMode

    /// The largest write issued at once while emulating a zero request.
    public static var emulationChunkSize: Int { 1 << 20 }

    /// Wraps `next` for one connection.
    ///
    /// - Throws: `NBDError` (`EINVAL`) for `ZeroMode.notrim` or `ZeroMode.plugin` over a writable
    ///   layer without zero support, as nbdkit refuses the connection in `prepare`. A read-only
    ///   connection is never refused: no zero request can arrive.
    public init(
        wrapping next: Next, zeroMode: ZeroMode = .none, fastZeroMode: FastZeroMode = .default,
        connection: ConnectionInfo
    ) throws(NBDError) {
        let below = next.capabilities
        let readOnly = connection.isReadOnly || !below.isWritable
        if !readOnly, zeroMode == .notrim || zeroMode == .plugin, !below.canZero {
            throw NBDError(.invalidArgument, "zeromode '\(zeroMode)' requires zero support in the layer below")
        }
        var capabilities = below
        switch zeroMode {
        case .none:
            capabilities.canZero = false
            capabilities.canFastZero = false
        case .emulate:
            capabilities.canZero = below.isWritable
            capabilities.canFastZero = below.isWritable && fastZeroMode != .none
            // Emulation writes data, so it is as slow as a write below.
            capabilities.slowOperations.remove(.zero)
            if below.slowOperations.contains(.write) { capabilities.slowOperations.insert(.zero) }
        case .notrim, .plugin:
            switch fastZeroMode {
            case .default: break
            case .none: capabilities.canFastZero = false
            case .slow, .ignore: capabilities.canFastZero = capabilities.canZero
            }
        }
        self.next = next
        self.zeroMode = zeroMode
        self.fastZeroMode = fastZeroMode
        self.capabilities = capabilities
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        var flags = flags
        if flags.contains(.fastZero) {
            switch fastZeroMode {
            case .none, .slow:
                // `none` did not advertise it, so the server's validator refuses it first; a caller that
                // bypasses the validator still gets the NBD answer for "not fast".
                throw NBDError(.notSupported, "fast zero refused by the nozero filter (fastzeromode=\(fastZeroMode))")
            case .default:
                if zeroMode == .emulate {
                    throw NBDError(.notSupported, "fast zero refused: the nozero filter emulates zeroes with writes")
                }
            case .ignore:
                flags.remove(.fastZero)
            }
        }
        switch zeroMode {
        case .none:
            throw NBDError(.invalidArgument, "write-zeroes is not supported (the nozero filter's zeromode=none)")
        case .emulate:
            try await writeZeroes(count: count, at: offset, flags: flags.intersection(.fua))
        case .notrim:
            try await next.zero(count: count, at: offset, flags: flags.union(.noHole))
        case .plugin:
            try await next.zero(count: count, at: offset, flags: flags)
        }
    }

    /// Writes `count` zero bytes at `offset` with plain writes, in chunks the layer below accepts.
    /// Every chunk carries the request's FUA flag, so the whole range is durable when it returns.
    @usableFromInline
    func writeZeroes(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        let limit = max(1, Int(next.capabilities.blockSize.maximumPayload))
        let chunk = Int(min(count, UInt64(min(Self.emulationChunkSize, limit))))
        guard chunk > 0 else { return }
        let zeroes = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { zeroes.deallocate() }
        zeroes.initializeMemory(as: UInt8.self, repeating: 0)
        var done: UInt64 = 0
        while done < count {
            let n = Int(min(UInt64(chunk), count - done))
            try await next.write(UnsafeRawBufferPointer(rebasing: zeroes[..<n]), at: offset + done, flags: flags)
            done += UInt64(n)
        }
    }
}
