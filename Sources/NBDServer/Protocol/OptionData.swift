/// A cursor over the data of one handshake option, with bounds-checked big-endian reads. Every read
/// returns `nil` instead of trapping when the client sent too little.
struct OptionData {
    private let bytes: [UInt8]
    private var position = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var remaining: Int { bytes.count - position }

    mutating func readUInt16() -> UInt16? {
        guard remaining >= 2 else { return nil }
        defer { position += 2 }
        return UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1])
    }

    mutating func readUInt32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        var value: UInt32 = 0
        for index in 0..<4 { value = value << 8 | UInt32(bytes[position + index]) }
        position += 4
        return value
    }

    /// Reads `count` bytes as UTF-8 (invalid sequences become U+FFFD).
    mutating func readString(count: Int) -> String? {
        guard count >= 0, remaining >= count else { return nil }
        defer { position += count }
        return String(decoding: bytes[position..<(position + count)], as: UTF8.self)
    }

    /// Reads a string preceded by its 32-bit length.
    mutating func readLengthPrefixedString() -> String? {
        guard let length = readUInt32(), Int(length) <= remaining else { return nil }
        return readString(count: Int(length))
    }
}
