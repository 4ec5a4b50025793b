import Foundation
import NBDCore

/// The rescued ranges of a GNU ddrescue mapfile: the blocks whose status is `+` (finished). Every
/// other status (`?` non-tried, `*` non-trimmed, `/` non-scraped, `-` bad sector) is unreadable.
///
/// The format: `#` comment lines, one status line (`current_pos current_status [pass]`), then one
/// `pos size status` line per block, numbers in C notation (`0x10000`, `65536`, `0200`).
public struct RescueMap: Sendable, Hashable {
    /// Rescued ranges `[start, end)`, sorted and with adjacent ranges joined.
    let rescued: [Range<UInt64>]

    /// Parses the text of a mapfile; `source` names it in errors.
    ///
    /// - Throws: `NBDError` (`EINVAL`) naming the line for a block line that does not parse.
    public init(parsing text: String, source: String = "ddrescue-mapfile") throws(NBDError) {
        var ranges: [Range<UInt64>] = []
        var sawStatus = false
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty || fields[0].hasPrefix("#") { continue }
            if !sawStatus {
                sawStatus = true
                continue
            }
            guard fields.count >= 3, let start = Self.number(fields[0]), let size = Self.number(fields[1]),
                fields[2].count == 1, start <= UInt64(Int64.max), size <= UInt64(Int64.max) - start
            else {
                throw NBDError(
                    .invalidArgument,
                    "\(source) line \(index + 1): '\(line)': expected a ddrescue block line 'pos size status', such as '0x00010000  0x00000200  -'"
                )
            }
            if fields[2] == "+" && size > 0 { ranges.append(start..<start + size) }
        }
        ranges.sort { $0.lowerBound < $1.lowerBound }
        var joined: [Range<UInt64>] = []
        for range in ranges {
            if let last = joined.last, range.lowerBound <= last.upperBound {
                joined[joined.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                joined.append(range)
            }
        }
        rescued = joined
    }

    /// Reads and parses the mapfile at `path`.
    public init(contentsOf path: String) throws(NBDError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NBDError(.invalidArgument, "ddrescue-mapfile=\(path): cannot read the file")
        }
        try self.init(parsing: String(decoding: data, as: UTF8.self), source: path)
    }

    /// A number as C's `%i` reads it: `0x` hexadecimal, a leading `0` octal, otherwise decimal.
    private static func number(_ text: Substring) -> UInt64? {
        if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) }
        if text.count > 1 && text.hasPrefix("0") { return UInt64(text.dropFirst(), radix: 8) }
        return UInt64(text)
    }

    /// Whether every byte of `[offset, offset + count)` was rescued.
    public func isRescued(count: UInt64, at offset: UInt64) -> Bool {
        var low = 0
        var high = rescued.count
        // The first range that ends after `offset`.
        while low < high {
            let middle = (low + high) / 2
            if rescued[middle].upperBound <= offset { low = middle + 1 } else { high = middle }
        }
        guard low < rescued.count else { return false }
        let range = rescued[low]
        return range.lowerBound <= offset && offset + count <= range.upperBound
    }
}
