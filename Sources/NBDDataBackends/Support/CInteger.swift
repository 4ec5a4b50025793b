/// Parses an unsigned integer the way C's `strtoull(text, _, 0)` reads nbdkit's numeric parameters:
/// decimal, hexadecimal after `0x`/`0X`, octal after a leading `0`. `nil` for anything else,
/// including a sign, spaces or an empty string, and for values that overflow 64 bits.
func parseCInteger<S: StringProtocol>(_ text: S) -> UInt64? {
    let lower = text.lowercased()
    if lower.hasPrefix("0x") {
        let digits = lower.dropFirst(2)
        return digits.isEmpty ? nil : UInt64(digits, radix: 16)
    }
    if lower.count > 1 && lower.hasPrefix("0") {
        return UInt64(lower.dropFirst(), radix: 8)
    }
    guard !lower.isEmpty, lower.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
    return UInt64(lower)
}
