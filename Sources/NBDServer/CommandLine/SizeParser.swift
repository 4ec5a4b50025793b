/// Parses sizes the way nbdkit does: a decimal number with an optional suffix `K`, `M`, `G`, `T`, `P`
/// or `E` (powers of 1024, either case, optionally followed by `iB` or `B`), or `b` for bytes.
///
/// ```swift
/// try parseSize("1G")     // 1073741824
/// try parseSize("512")    // 512
/// ```
public func parseSize(_ text: String, for key: String = "size") throws(CommandLineError) -> UInt64 {
    let digits = text.prefix { $0.isASCII && $0.isNumber }
    guard !digits.isEmpty, let number = UInt64(digits) else {
        throw CommandLineError("\(key)=\(text): expected a size such as 512, 64K, 1M or 2G")
    }
    var suffix = text.dropFirst(digits.count).lowercased()
    if suffix.hasSuffix("ib") {
        suffix.removeLast(2)
    } else if suffix.count == 2 && suffix.hasSuffix("b") {
        suffix.removeLast()
    }
    let shift: UInt64
    switch suffix {
    case "", "b": shift = 0
    case "k": shift = 10
    case "m": shift = 20
    case "g": shift = 30
    case "t": shift = 40
    case "p": shift = 50
    case "e": shift = 60
    default:
        throw CommandLineError(
            "\(key)=\(text): unknown size suffix '\(suffix)'; use K, M, G, T, P or E (powers of 1024)")
    }
    let (value, overflow) = number.multipliedReportingOverflow(by: 1 << shift)
    guard !overflow, value <= UInt64(Int64.max) else {
        throw CommandLineError("\(key)=\(text): the size is larger than the NBD maximum of 2^63 - 1 bytes")
    }
    return value
}
