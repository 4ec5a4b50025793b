import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// One log line being formatted into a caller-provided buffer: nbdkit's log format, without
/// allocating. Text that does not fit is cut off (the buffer is sized for the longest fixed line;
/// only extents lists and export names are unbounded, and they get a larger buffer).
struct LogLine {
    let buffer: UnsafeMutableRawBufferPointer
    private(set) var count = 0

    init(buffer: UnsafeMutableRawBufferPointer) {
        self.buffer = buffer
    }

    /// The formatted bytes.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: buffer[0..<count]) }

    mutating func byte(_ value: UInt8) {
        guard count < buffer.count else { return }
        buffer[count] = value
        count += 1
    }

    mutating func text(_ value: StaticString) {
        value.withUTF8Buffer { for byte in $0 { self.byte(byte) } }
    }

    mutating func text(_ value: String) {
        for byte in value.utf8 { self.byte(byte) }
    }

    mutating func decimal(_ value: UInt64) {
        var digits:
            (
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
            ) =
                (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var length = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { digits in
            repeat {
                digits[length] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                length += 1
            } while rest > 0
            for index in stride(from: length - 1, through: 0, by: -1) { byte(digits[index]) }
        }
    }

    /// `value` zero-padded to `width` decimal digits.
    mutating func decimal(_ value: Int, width: Int) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        var rest = value
        while divisor > 0 {
            byte(UInt8(ascii: "0") + UInt8((rest / divisor) % 10))
            rest %= divisor
            divisor /= 10
        }
    }

    /// `0x` and lower-case hexadecimal, as C's `0x%x`.
    mutating func hex(_ value: UInt64) {
        text("0x")
        let digits = max(1, (64 - value.leadingZeroBitCount + 3) / 4)
        for index in stride(from: digits - 1, through: 0, by: -1) {
            let nibble = UInt8((value >> (UInt64(index) * 4)) & 0xf)
            byte(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
        }
    }

    mutating func flag(_ name: StaticString, _ value: Bool) {
        byte(UInt8(ascii: " "))
        text(name)
        byte(UInt8(ascii: "="))
        byte(value ? UInt8(ascii: "1") : UInt8(ascii: "0"))
    }

    /// `text` in double quotes with the shell's special characters escaped, as nbdkit quotes strings.
    mutating func quoted(_ value: String) {
        byte(UInt8(ascii: "\""))
        for byte in value.utf8 {
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "$")
                || byte == UInt8(ascii: "`")
            {
                self.byte(UInt8(ascii: "\\"))
            }
            self.byte(byte)
        }
        byte(UInt8(ascii: "\""))
    }

    /// The current time in UTC as `YYYY-MM-DD HH:MM:SS.uuuuuu`.
    mutating func timestamp() {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        decimal(Int(parts.tm_year) + 1900, width: 4)
        byte(UInt8(ascii: "-"))
        decimal(Int(parts.tm_mon) + 1, width: 2)
        byte(UInt8(ascii: "-"))
        decimal(Int(parts.tm_mday), width: 2)
        byte(UInt8(ascii: " "))
        decimal(Int(parts.tm_hour), width: 2)
        byte(UInt8(ascii: ":"))
        decimal(Int(parts.tm_min), width: 2)
        byte(UInt8(ascii: ":"))
        decimal(Int(parts.tm_sec), width: 2)
        byte(UInt8(ascii: "."))
        decimal(Int(now.tv_nsec / 1000), width: 6)
    }
}

extension NBDError.Code {
    /// The name nbdkit's log filter prints after `error=`: the wire error's name.
    var logName: StaticString {
        switch wireValue {
        case 1: "EPERM"
        case 5: "EIO"
        case 12: "ENOMEM"
        case 28: "ENOSPC"
        case 108: "ESHUTDOWN"
        case 95: "ENOTSUP"
        case 75: "EOVERFLOW"
        default: "EINVAL"
        }
    }
}
