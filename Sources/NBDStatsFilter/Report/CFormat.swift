#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Formats one number with a C `printf` format, so the report's numbers round exactly as nbdkit's do
/// (`%.6f`, `%4.1f`, `%.2f`) without pulling in Foundation.
func cFormat(_ format: String, _ value: Double) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    let written = withVaList([value]) { arguments in
        buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, format, arguments) }
    }
    if written >= buffer.count {
        // Only absurdly large values need more than 64 characters; size exactly and format again.
        buffer = [CChar](repeating: 0, count: Int(written) + 1)
        _ = withVaList([value]) { arguments in
            buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, format, arguments) }
        }
    }
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// `%2d`: right-aligned in two columns.
func padded2(_ value: Int) -> String {
    value < 10 && value >= 0 ? " \(value)" : "\(value)"
}

private let KiB: UInt64 = 1024
private let MiB: UInt64 = 1_048_576
private let GiB: UInt64 = 1_073_741_824

/// nbdkit's `humansize`: `N bytes` below 1 KiB, then `%.2f KiB`, `MiB` or `GiB`.
func humanSize(_ bytes: UInt64) -> String {
    if bytes < KiB { return "\(bytes) bytes" }
    if bytes < MiB { return cFormat("%.2f KiB", Double(bytes) / Double(KiB)) }
    if bytes < GiB { return cFormat("%.2f MiB", Double(bytes) / Double(MiB)) }
    return cFormat("%.2f GiB", Double(bytes) / Double(GiB))
}

/// nbdkit's `humanrate`: bytes per second over whole microseconds, `(n/a)` for 0 µs. The rate is
/// truncated to whole bytes before formatting, as nbdkit's conversion to `uint64_t` does.
func humanRate(_ bytes: UInt64, microseconds: UInt64) -> String {
    let seconds = Double(microseconds) / 1_000_000.0
    guard seconds != 0 else { return "(n/a)" }
    let rate = Double(bytes) / seconds
    return humanSize(rate >= 18_446_744_073_709_551_615.0 ? UInt64.max : UInt64(rate))
}
