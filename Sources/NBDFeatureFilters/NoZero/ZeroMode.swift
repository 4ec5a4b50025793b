import NBDCore

/// How the nozero filter handles write-zeroes requests: nbdkit's `zeromode` parameter.
public enum ZeroMode: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Write-zeroes is not advertised; clients write zeroes as data. The default.
    case none
    /// Write-zeroes is advertised but carried out as writes of zero-filled buffers to the layer
    /// below, whatever that layer could do itself.
    case emulate
    /// Zero requests go down with `NO_HOLE` added, so the layer below may not punch holes for them.
    /// Needs zero support below.
    case notrim
    /// Zero requests go down unchanged (useful with ``FastZeroMode``). Needs zero support below.
    case plugin

    public var description: String { rawValue }
}

/// How the nozero filter handles the fast-zero flag: nbdkit's `fastzeromode` parameter.
public enum FastZeroMode: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// With ``ZeroMode/emulate``: fast zero is advertised and every fast zero fails with `ENOTSUP`
    /// (emulation is never fast). Otherwise: whatever the layer below does. The default.
    case `default`
    /// Fast zero is not advertised.
    case none
    /// Fast zero is advertised and every fast-zero request fails at once with `ENOTSUP`.
    case slow
    /// Fast zero is advertised and the flag is dropped, so the request zeroes however slowly.
    /// **Unsafe**: contrary to the NBD specification.
    case ignore

    public var description: String { rawValue }
}
