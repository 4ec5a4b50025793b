import NBDCore

/// What the FUA filter does with the FUA flag and with flushes: nbdkit's `fuamode` parameter.
///
/// | mode | FUA advertised | flush advertised | write/zero/trim with FUA | client flush |
/// |---|---|---|---|---|
/// | ``none`` | no | as below | rejected (`EINVAL`), FUA was not advertised | passed down |
/// | ``emulate`` | emulated | as below | FUA removed, operation, then a flush below | passed down |
/// | ``native`` | native | as below | passed down unchanged | passed down |
/// | ``force`` | native | always | FUA added to *every* write, zero and trim | answered at once |
/// | ``pass`` | as below | as below | passed down unchanged | passed down |
/// | ``discard`` | native | always | FUA removed | dropped (unsafe) |
public enum FUAMode: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Do not advertise FUA, so clients flush instead. The default.
    case none
    /// Advertise FUA and honour it with a flush of the layer below after the operation.
    case emulate
    /// Advertise FUA as native and pass it down; the layer below must support FUA.
    case native
    /// Send every write, zero and trim down with FUA, so a flush has nothing left to do and is
    /// answered without reaching the layer below. The layer below must support FUA.
    case force
    /// Advertise what the layer below advertises and change nothing.
    case pass
    /// Advertise FUA and flush but drop both: fast and **unsafe**, data may be lost on a crash.
    case discard

    public var description: String { rawValue }

    /// Parses a `fuamode` value (any case).
    ///
    /// Unlike nbdkit (whose parser falls through and rejects it), an explicit `fuamode=none` is accepted.
    public static func parse(_ text: String) throws(NBDError) -> FUAMode {
        guard let mode = FUAMode(rawValue: text.lowercased()) else {
            throw NBDError(
                .invalidArgument,
                "fuamode=\(text): expected one of none (the default), emulate, native, force, pass, discard")
        }
        return mode
    }
}
