import NBDCore

/// Parses nbdkit's data format (`nbdkit-data-plugin(1)`, DATA FORMAT) into ``DataExpression``s.
///
/// Supported: bytes (decimal, `0x` hex, `0` octal), `le16:`/`be16:`/`le32:`/`be32:`/`le64:`/`be64:`
/// words, `"strings"` with C escapes, `@OFFSET` (decimal with a K/M/G... suffix, or hex/octal),
/// `@+N`, `@-N`, `@^N`, `<FILE`, `( ... )`, `*N`, `[N:M]`, `-> \NAME`, `\NAME`, `$VAR` (from the
/// environment), `<(SCRIPT)` and `#` comments.
struct DataFormatParser {
    private let text: [UInt8]
    private var position = 0
    /// Looks up `$VAR`.
    private let variable: (String) -> String?
    /// How deep `$VAR` substitution may nest before it is taken for a loop.
    private let depth: Int

    init(_ text: String, depth: Int = 0, variable: @escaping (String) -> String?) {
        self.text = Array(text.utf8)
        self.variable = variable
        self.depth = depth
    }

    /// Parses the whole text.
    static func parse(_ text: String, variable: @escaping (String) -> String?) throws(NBDError) -> [DataExpression] {
        var parser = DataFormatParser(text, variable: variable)
        return try parser.parseAll()
    }

    private func error(_ message: String) -> NBDError {
        NBDError(.invalidArgument, "data: \(message) (at character \(position) of the data parameter)")
    }

    mutating func parseAll() throws(NBDError) -> [DataExpression] {
        let list = try parseList()
        if position < text.count {
            throw error("unmatched ')'")
        }
        return list
    }

    /// Parses expressions up to the end or an unmatched `)`, which is left unread.
    private mutating func parseList() throws(NBDError) -> [DataExpression] {
        var list: [DataExpression] = []
        while true {
            skipSpaceAndComments()
            guard position < text.count else { return list }
            let character = text[position]
            switch character {
            case UInt8(ascii: ")"):
                return list
            case UInt8(ascii: "("):
                position += 1
                let inner = try parseList()
                guard position < text.count, text[position] == UInt8(ascii: ")") else {
                    throw error("unmatched '('")
                }
                position += 1
                list.append(.group(inner))
            case UInt8(ascii: "\""):
                position += 1
                list.append(.bytes(try parseString()))
            case UInt8(ascii: "@"):
                position += 1
                list.append(try parseOffset())
            case UInt8(ascii: "<"):
                position += 1
                if position < text.count && text[position] == UInt8(ascii: "(") {
                    position += 1
                    list.append(.script(try parseScript()))
                    continue
                }
                let name = take { !Self.isSpace($0) && !"*[)".utf8.contains($0) }
                guard !name.isEmpty else { throw error("<FILE needs a file name") }
                list.append(.file(name))
            case UInt8(ascii: "\\"):
                position += 1
                list.append(.name(try parseName()))
            case UInt8(ascii: "$"):
                position += 1
                list.append(try parseVariable())
            case UInt8(ascii: "*"):
                position += 1
                guard let last = list.popLast() else { throw error("*N must follow an expression") }
                guard last.isData else { throw error("*N cannot follow an offset (@) or an assignment (->)") }
                guard let count = parseNumber() else { throw error("*N needs a whole number, such as *16 or *0x10") }
                list.append(.repeated(last, count: count))
            case UInt8(ascii: "["):
                position += 1
                guard let last = list.popLast() else { throw error("[N:M] must follow an expression") }
                guard last.isData else { throw error("[N:M] cannot follow an offset (@) or an assignment (->)") }
                list.append(try parseSlice(of: last))
            case UInt8(ascii: "-"):
                guard position + 1 < text.count, text[position + 1] == UInt8(ascii: ">") else {
                    throw error("unexpected '-' (write -> \\NAME to name an expression, @-N to move back)")
                }
                position += 2
                skipSpaceAndComments()
                guard position < text.count, text[position] == UInt8(ascii: "\\") else {
                    throw error("-> must be followed by \\NAME")
                }
                position += 1
                guard let last = list.popLast() else { throw error("-> must follow an expression") }
                guard last.isData else { throw error("-> cannot follow an offset (@) or an assignment (->)") }
                list.append(.assign(name: try parseName(), last))
            case UInt8(ascii: "l"), UInt8(ascii: "b"):
                list.append(.bytes(try parseWord()))
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                let start = position
                guard let value = parseNumber(), value <= 255 else {
                    position = start
                    throw error("a BYTE must be a number from 0 to 255")
                }
                list.append(.bytes([UInt8(value)]))
            default:
                throw error("unexpected '\(Character(Unicode.Scalar(character)))'")
            }
        }
    }

    private static func isSpace(_ character: UInt8) -> Bool {
        character == 0x20 || (0x09...0x0d).contains(character)
    }

    private mutating func skipSpaceAndComments() {
        while position < text.count {
            if Self.isSpace(text[position]) {
                position += 1
            } else if text[position] == UInt8(ascii: "#") {
                while position < text.count && text[position] != UInt8(ascii: "\n") { position += 1 }
            } else {
                return
            }
        }
    }

    private mutating func take(while predicate: (UInt8) -> Bool) -> String {
        let start = position
        while position < text.count && predicate(text[position]) { position += 1 }
        return String(decoding: text[start..<position], as: UTF8.self)
    }

    /// A C integer (decimal, `0x` hex, `0` octal) at the current position, or `nil` (position kept).
    private mutating func parseNumber() -> UInt64? {
        let start = position
        let digits = take {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) || $0 | 0x20 == 0x78
        }
        guard let value = parseCInteger(digits) else {
            position = start
            return nil
        }
        return value
    }

    private mutating func parseOffset() throws(NBDError) -> DataExpression {
        guard position < text.count else { throw error("@ needs an offset") }
        let sign = text[position]
        let isSigned = sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") || sign == UInt8(ascii: "^")
        if isSigned { position += 1 }
        guard position < text.count, (0x30...0x39).contains(text[position]) else {
            throw error("@ needs a number, such as @512, @0x1fe, @+8, @-2 or @^512")
        }
        let value: UInt64
        if text[position] == UInt8(ascii: "0") {
            // Hex or octal: no size suffix, as in nbdkit.
            guard let number = parseNumber() else { throw error("@ needs a number, such as @0x1fe") }
            value = number
        } else {
            let word = take { !Self.isSpace($0) && $0 != UInt8(ascii: ")") }
            value = try parseSize(word, for: "data parameter @")
        }
        switch sign {
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard value <= UInt64(Int64.max) else {
                throw error("@\(Character(Unicode.Scalar(sign)))\(value) is too large")
            }
            return .relativeOffset(sign == UInt8(ascii: "+") ? Int64(value) : -Int64(value))
        case UInt8(ascii: "^"):
            guard value > 0, value & (value - 1) == 0 else {
                throw error("@^\(value): the alignment must be a power of 2")
            }
            return .align(value)
        default:
            return .absoluteOffset(value)
        }
    }

    private mutating func parseString() throws(NBDError) -> [UInt8] {
        var bytes: [UInt8] = []
        while position < text.count {
            var character = text[position]
            position += 1
            if character == UInt8(ascii: "\"") { return bytes }
            if character == UInt8(ascii: "\\") {
                guard position < text.count else { break }
                let escape = text[position]
                position += 1
                switch escape {
                case UInt8(ascii: "a"): character = 0x07
                case UInt8(ascii: "b"): character = 0x08
                case UInt8(ascii: "f"): character = 0x0c
                case UInt8(ascii: "n"): character = 0x0a
                case UInt8(ascii: "r"): character = 0x0d
                case UInt8(ascii: "t"): character = 0x09
                case UInt8(ascii: "v"): character = 0x0b
                case UInt8(ascii: "x"):
                    guard position + 2 <= text.count,
                        let value = UInt8(String(decoding: text[position..<position + 2], as: UTF8.self), radix: 16)
                    else { throw error("\\xNN in a string needs exactly two hexadecimal digits") }
                    position += 2
                    character = value
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "u"):
                    throw error("numeric and unicode escapes in strings are not supported (as in nbdkit); use \\xNN")
                default:
                    character = escape
                }
            }
            bytes.append(character)
        }
        throw error("unterminated string")
    }

    /// The text of `<(SCRIPT)` after the `(`, up to the matching `)`: the script may hold
    /// parentheses in matching pairs, as in nbdkit.
    private mutating func parseScript() throws(NBDError) -> String {
        let start = position
        var depth = 1
        while position < text.count {
            if text[position] == UInt8(ascii: "(") { depth += 1 }
            if text[position] == UInt8(ascii: ")") {
                depth -= 1
                if depth == 0 {
                    let script = String(decoding: text[start..<position], as: UTF8.self)
                    position += 1
                    return script
                }
            }
            position += 1
        }
        throw error("<(SCRIPT) has no matching ')'")
    }

    /// `le16:N`, `be32:N`, ...
    private mutating func parseWord() throws(NBDError) -> [UInt8] {
        let start = position
        let prefix = take { $0 != UInt8(ascii: ":") && !Self.isSpace($0) }
        let widths = [
            "le16": (2, true), "be16": (2, false), "le32": (4, true), "be32": (4, false),
            "le64": (8, true), "be64": (8, false),
        ]
        guard let (width, littleEndian) = widths[prefix], position < text.count, text[position] == UInt8(ascii: ":")
        else {
            position = start
            throw error("expected le16:, be16:, le32:, be32:, le64: or be64: followed by a number")
        }
        position += 1
        guard let value = parseNumber(), width == 8 || value < (1 << UInt64(width * 8)) else {
            throw error("\(prefix): needs a number that fits in \(width * 8) bits")
        }
        return (0..<width).map { index in
            let shift = UInt64(littleEndian ? index : width - 1 - index) * 8
            return UInt8(truncatingIfNeeded: value >> shift)
        }
    }

    /// `[N:M]`, `[N:]`, `[:M]`, `[:]`, after the `[`.
    private mutating func parseSlice(of expression: DataExpression) throws(NBDError) -> DataExpression {
        let start = parseNumber() ?? 0
        guard position < text.count, text[position] == UInt8(ascii: ":") else {
            throw error("[N:M] needs a ':' between the numbers")
        }
        position += 1
        let end = parseNumber()
        guard position < text.count, text[position] == UInt8(ascii: "]") else {
            throw error("[N:M] is not closed with ']'")
        }
        position += 1
        if let end, end < start { throw error("[\(start):\(end)] does not describe a valid slice") }
        return .slice(expression, start: start, end: end)
    }

    /// A name after `\`: letters, digits, `-` and `_`.
    private mutating func parseName() throws(NBDError) -> String {
        let name = take {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a) || $0 == 0x2d || $0 == 0x5f
        }
        guard !name.isEmpty else { throw error("\\NAME needs a name of letters, digits, '-' and '_'") }
        return name
    }

    /// `$VAR`: the variable's value parsed as data, as a nested group.
    private mutating func parseVariable() throws(NBDError) -> DataExpression {
        let name = take { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a) || $0 == 0x5f }
        guard !name.isEmpty else { throw error("$VAR needs a variable name") }
        guard let value = variable(name) else {
            throw error("$\(name): variable not found (nbd-serve reads $VAR from the environment)")
        }
        guard depth < 32 else { throw error("$\(name): variables nest more than 32 deep") }
        var inner = DataFormatParser(value, depth: depth + 1, variable: variable)
        return .group(try inner.parseAll())
    }
}
