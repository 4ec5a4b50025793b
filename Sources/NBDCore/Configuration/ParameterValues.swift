/// The `key=value` parameters given to one filter or backend, in command-line order, with typed
/// accessors whose errors name the parameter and say what it accepts.
///
/// ```swift
/// let values: ParameterValues = ["cache": "writeback", "cache-max-size": "1G"]
/// let maximum = try values.size("cache-max-size")            // 1073741824
/// let mode = try values.choice("cache", ["writeback": 0, "writethrough": 1], default: 0)
/// ```
///
/// A key given more than once keeps every value (``all(_:)``, for nbdkit's repeatable `protect=`);
/// the single-value accessors read the last one, as nbdkit's `config` callbacks do by overwriting.
public struct ParameterValues: Sendable, Hashable, ExpressibleByDictionaryLiteral, Sequence {
    /// One `key=value`.
    public struct Entry: Sendable, Hashable {
        /// The text before the first `=`.
        public var key: String
        /// The text after the first `=`.
        public var value: String

        /// Creates an entry.
        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    /// Every parameter, in the order given.
    public private(set) var entries: [Entry]

    /// No parameters.
    public init() {
        entries = []
    }

    /// The given entries, in order.
    public init(_ entries: [Entry]) {
        self.entries = entries
    }

    /// The given pairs, in order.
    public init(dictionaryLiteral elements: (String, String)...) {
        entries = elements.map { Entry(key: $0.0, value: $0.1) }
    }

    /// Adds `key=value` after the others.
    public mutating func append(_ key: String, _ value: String) {
        entries.append(Entry(key: key, value: value))
    }

    public func makeIterator() -> IndexingIterator<[Entry]> {
        entries.makeIterator()
    }

    /// Whether no parameter was given.
    public var isEmpty: Bool { entries.isEmpty }

    /// The value last given for `key`, or `nil`.
    public subscript(key: String) -> String? {
        entries.last { $0.key == key }?.value
    }

    /// Every value given for `key`, in order.
    public func all(_ key: String) -> [String] {
        entries.filter { $0.key == key }.map(\.value)
    }

    /// Whether `key` was given.
    public func contains(_ key: String) -> Bool {
        entries.contains { $0.key == key }
    }

    /// The value of the first of `keys` that was given: a parameter and its aliases.
    public func value(_ keys: String...) -> (key: String, value: String)? {
        for key in keys {
            if let value = self[key] { return (key, value) }
        }
        return nil
    }

    // MARK: Typed accessors

    /// The value of `key`, or an error that says the parameter is required, with an example.
    public func required(_ key: String, example: String) throws(NBDError) -> String {
        guard let value = self[key] else {
            throw NBDError(.invalidArgument, "\(key)=... is required, for example \(key)=\(example)")
        }
        return value
    }

    /// `key` as a boolean (nbdkit's `1/true/yes/on` and `0/false/no/off`), or `defaultValue`.
    public func boolean(_ key: String, default defaultValue: Bool) throws(NBDError) -> Bool {
        guard let text = self[key] else { return defaultValue }
        return try parseBoolean(text, for: key)
    }

    /// `key` as a size in bytes (`512`, `64K`, `1M`, ...), or `nil` when not given.
    public func size(_ key: String) throws(NBDError) -> UInt64? {
        guard let text = self[key] else { return nil }
        return try parseSize(text, for: key)
    }

    /// `key` as a size in bytes, or `defaultValue`.
    public func size(_ key: String, default defaultValue: UInt64) throws(NBDError) -> UInt64 {
        try size(key) ?? defaultValue
    }

    /// `key` as a decimal integer within `range`, or `nil` when not given.
    public func integer<T: FixedWidthInteger & Sendable>(
        _ key: String, in range: ClosedRange<T> = T.min...T.max
    ) throws(NBDError) -> T? {
        guard let text = self[key] else { return nil }
        guard let value = T(text.trimmingSpaces), range.contains(value) else {
            throw NBDError(.invalidArgument, "\(key)=\(text): expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// `key` as one of `choices` (matched without regard to case), or `defaultValue`. The error
    /// lists the accepted values.
    public func choice<T: Sendable>(
        _ key: String, _ choices: KeyValuePairs<String, T>, default defaultValue: T
    ) throws(NBDError) -> T {
        guard let text = self[key] else { return defaultValue }
        if let match = choices.first(where: { $0.key == text.lowercased() }) {
            return match.value
        }
        let names = choices.map(\.key).joined(separator: ", ")
        throw NBDError(.invalidArgument, "\(key)=\(text): expected one of \(names)")
    }

    /// `key` as a duration (`2`, `0.5`, `1.5s`, `100ms`, `250us`, `10ns`), or `nil` when not given.
    public func duration(_ key: String) throws(NBDError) -> Duration? {
        guard let text = self[key] else { return nil }
        return try parseDuration(text, for: key)
    }
}

extension StringProtocol {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

/// Parses nbdkit's boolean values: `1/true/yes/on` and `0/false/no/off` (any case).
public func parseBoolean(_ text: String, for key: String) throws(NBDError) -> Bool {
    switch text.lowercased() {
    case "1", "true", "yes", "on": return true
    case "0", "false", "no", "off": return false
    default:
        throw NBDError(.invalidArgument, "\(key)=\(text): expected a boolean (true/false, yes/no, on/off, 1/0)")
    }
}

/// Parses sizes the way nbdkit does: a decimal number with an optional suffix `K`, `M`, `G`, `T`, `P`
/// or `E` (powers of 1024, either case, optionally followed by `iB` or `B`), or `b` for bytes.
///
/// ```swift
/// try parseSize("1G", for: "size")     // 1073741824
/// ```
///
/// - Throws: ``NBDError`` naming `key` for text that is not a size, or a size above 2^63 − 1.
public func parseSize(_ text: String, for key: String = "size") throws(NBDError) -> UInt64 {
    let digits = text.prefix { $0.isASCII && $0.isNumber }
    guard !digits.isEmpty, let number = UInt64(digits) else {
        throw NBDError(.invalidArgument, "\(key)=\(text): expected a size such as 512, 64K, 1M or 2G")
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
        throw NBDError(
            .invalidArgument, "\(key)=\(text): unknown size suffix '\(suffix)'; use K, M, G, T, P or E (powers of 1024)")
    }
    let (value, overflow) = number.multipliedReportingOverflow(by: 1 << shift)
    guard !overflow, value <= UInt64(Int64.max) else {
        throw NBDError(.invalidArgument, "\(key)=\(text): the size is larger than the NBD maximum of 2^63 - 1 bytes")
    }
    return value
}

/// Parses a duration as nbdkit's delay filters take it: a non-negative number of seconds (`2`,
/// `0.5`), or a number followed by `s`, `ms`, `us` or `ns`.
///
/// - Throws: ``NBDError`` naming `key` for anything else.
public func parseDuration(_ text: String, for key: String) throws(NBDError) -> Duration {
    let units: [(suffix: String, nanoseconds: Double)] = [("ms", 1e6), ("us", 1e3), ("ns", 1), ("s", 1e9)]
    var number = Substring(text)
    var scale = 1e9
    for unit in units where text.hasSuffix(unit.suffix) {
        number = text.dropLast(unit.suffix.count)
        scale = unit.nanoseconds
        break
    }
    guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
        let value = Double(number), value.isFinite, value * scale < 1e18
    else {
        throw NBDError(.invalidArgument, "\(key)=\(text): expected a duration such as 2, 0.5, 1.5s or 100ms")
    }
    return .nanoseconds(Int64((value * scale).rounded()))
}
