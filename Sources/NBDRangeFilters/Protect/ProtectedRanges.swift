import NBDCore

/// The byte ranges the protect filter guards, sorted, with overlapping and adjacent ranges merged.
///
/// ```swift
/// let ranges = try ProtectedRanges(parsing: ["0-511", "~1048576-2097151"])
/// ranges.contains(100)    // true
/// ```
public struct ProtectedRanges: Sendable, Hashable {
    /// The ranges, inclusive, sorted by start, none overlapping or adjacent.
    public let ranges: [ClosedRange<UInt64>]

    /// The largest offset an export can have; an omitted `END` means this.
    public static let end = UInt64(Int64.max)

    /// Sorts and merges `ranges`.
    public init(_ ranges: [ClosedRange<UInt64>]) {
        var merged: [ClosedRange<UInt64>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last, last.upperBound == .max || range.lowerBound <= last.upperBound + 1 {
                merged[merged.count - 1] = last.lowerBound...max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        self.ranges = merged
    }

    /// Parses nbdkit's `protect=` values: `START-END` (inclusive), or `~START-END` for everything
    /// outside it. `START` and `END` are decimal, octal (`0NN`) or hexadecimal (`0xNN`) byte offsets;
    /// an omitted `START` is 0 and an omitted `END` the largest possible offset.
    ///
    /// - Throws: `NBDError` naming `protect=` for a value without `-`, a bad number, or `END < START`.
    public init(parsing values: [String]) throws(NBDError) {
        var ranges: [ClosedRange<UInt64>] = []
        for value in values {
            var text = Substring(value)
            let inverted = text.first == "~"
            if inverted { text = text.dropFirst() }
            guard let dash = text.firstIndex(of: "-") else {
                throw NBDError(
                    .invalidArgument, "protect=\(value): expected START-END, such as 0-511 or ~1048576-2097151")
            }
            let start = try Self.parseOffset(text[..<dash], value: value) ?? 0
            let end = try Self.parseOffset(text[text.index(after: dash)...], value: value) ?? Self.end
            guard start <= end else {
                throw NBDError(.invalidArgument, "protect=\(value): the end \(end) is before the start \(start)")
            }
            if !inverted {
                ranges.append(start...end)
            } else {
                if start > 0 { ranges.append(0...(start - 1)) }
                if end < Self.end { ranges.append((end + 1)...Self.end) }
            }
        }
        self.init(ranges)
    }

    /// A number as C's `strtoull` with base 0 reads it (nbdkit's `nbdkit_parse_uint64_t`); `nil` for
    /// empty text.
    static func parseOffset(_ text: Substring, value: String) throws(NBDError) -> UInt64? {
        if text.isEmpty { return nil }
        let lower = text.lowercased()
        let parsed: UInt64?
        if lower.hasPrefix("0x") {
            parsed = UInt64(lower.dropFirst(2), radix: 16)
        } else if lower.count > 1 && lower.hasPrefix("0") {
            parsed = UInt64(lower.dropFirst(), radix: 8)
        } else {
            parsed = UInt64(lower, radix: 10)
        }
        guard let parsed, parsed <= Self.end else {
            throw NBDError(
                .invalidArgument,
                "protect=\(value): '\(text)' is not a byte offset (decimal, 0NN octal or 0xNN hexadecimal, at most 2^63 - 1)"
            )
        }
        return parsed
    }

    /// Whether the byte at `offset` is protected.
    public func contains(_ offset: UInt64) -> Bool {
        ranges.contains { $0.contains(offset) }
    }

    /// The protected parts of the `count` bytes at `offset`, in order, as (offset, count) pairs.
    public func protectedParts(of count: UInt64, at offset: UInt64) -> [(offset: UInt64, count: UInt64)] {
        guard count > 0 else { return [] }
        let last = offset + (count - 1)
        var parts: [(offset: UInt64, count: UInt64)] = []
        for range in ranges where range.lowerBound <= last && range.upperBound >= offset {
            let start = max(range.lowerBound, offset)
            let end = min(range.upperBound, last)
            parts.append((start, end - start + 1))
        }
        return parts
    }

    /// Whether any of the `count` bytes at `offset` is protected; the hot path's check, which
    /// allocates nothing.
    @inlinable
    public func overlaps(_ count: UInt64, at offset: UInt64) -> Bool {
        guard count > 0 else { return false }
        let last = offset + (count - 1)
        for range in ranges where range.lowerBound <= last && range.upperBound >= offset {
            return true
        }
        return false
    }
}
