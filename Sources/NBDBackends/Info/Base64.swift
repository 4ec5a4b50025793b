/// Standard base64 (RFC 4648, `+` and `/`, `=` padding) for the info backend's base64 mode, without
/// Foundation.
enum Base64 {
    /// The bytes `text` encodes, or `nil` when it is not base64. Whitespace is ignored.
    static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        var padding = 0
        for character in text.utf8 {
            switch character {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): values.append(character - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): values.append(character - UInt8(ascii: "a") + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): values.append(character - UInt8(ascii: "0") + 52)
            case UInt8(ascii: "+"): values.append(62)
            case UInt8(ascii: "/"): values.append(63)
            case UInt8(ascii: "="): padding += 1
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): continue
            default: return nil
            }
            // Nothing but padding may follow padding.
            if padding > 0 && character != UInt8(ascii: "=") { return nil }
        }
        guard padding <= 2, (values.count + padding) % 4 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 3 / 4)
        var index = 0
        while index + 1 < values.count {
            let a = values[index], b = values[index + 1]
            bytes.append(a << 2 | b >> 4)
            if index + 2 < values.count {
                let c = values[index + 2]
                bytes.append(b << 4 | c >> 2)
                if index + 3 < values.count { bytes.append(c << 6 | values[index + 3]) }
            }
            index += 4
        }
        return bytes
    }
}
