import Foundation
import NBDCore

/// A static allocation map read from a text file, as nbdkit's extentlist filter reads it: one
/// `offset length [type]` per line, `type` an integer or a comma-separated list of `hole` and `zero`
/// (missing means allocated data). Gaps between the listed extents are holes that read as zero.
public struct ExtentList: Sendable, Hashable {
    /// One run of the map, in byte offsets.
    struct Run: Sendable, Hashable {
        var start: UInt64
        var end: UInt64
        var flags: Extent.Flags
    }

    /// Runs sorted by offset, covering `0..<UInt64.max` without gaps.
    let runs: [Run]

    /// Parses `text`; `source` names the file in errors. Blank lines and lines starting with `#` are
    /// skipped.
    ///
    /// - Throws: `NBDError` (`EINVAL`) naming the line for a line that is not an extent, and for
    ///   overlapping extents.
    public init(parsing text: String, source: String = "extentlist") throws(NBDError) {
        var listed: [Run] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let fields = rawLine.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty || fields[0].hasPrefix("#") { continue }
            guard fields.count >= 2 else {
                throw NBDError(
                    .invalidArgument,
                    "\(source) line \(index + 1): '\(rawLine)': expected 'offset length [type]', such as '1M 9M hole,zero'")
            }
            let offset = try parseSize(String(fields[0]), for: "\(source) line \(index + 1) offset")
            let length = try parseSize(String(fields[1]), for: "\(source) line \(index + 1) length")
            guard length > 0 else { continue }
            var flags: Extent.Flags = []
            if fields.count >= 3 {
                let type = String(fields[2])
                if let number = UInt32(type) {
                    flags = Extent.Flags(rawValue: number & 3)
                } else {
                    if type.contains("hole") { flags.insert(.hole) }
                    if type.contains("zero") { flags.insert(.zero) }
                }
            }
            let (end, overflow) = offset.addingReportingOverflow(length)
            guard !overflow else {
                throw NBDError(.invalidArgument, "\(source) line \(index + 1): offset + length overflows")
            }
            listed.append(Run(start: offset, end: end, flags: flags))
        }
        listed.sort { $0.start < $1.start }
        var runs: [Run] = []
        var position: UInt64 = 0
        for run in listed {
            guard run.start >= position else {
                throw NBDError(
                    .invalidArgument,
                    "\(source): the extent at offset \(run.start) overlaps the one before it; extents must not overlap")
            }
            if run.start > position { runs.append(Run(start: position, end: run.start, flags: [.hole, .zero])) }
            runs.append(run)
            position = run.end
        }
        if position < UInt64.max { runs.append(Run(start: position, end: UInt64.max, flags: [.hole, .zero])) }
        self.runs = runs
    }

    /// Reads and parses the file at `path`.
    public init(contentsOf path: String) throws(NBDError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NBDError(.invalidArgument, "extentlist=\(path): cannot read the file")
        }
        try self.init(parsing: String(decoding: data, as: UTF8.self), source: path)
    }

    /// The extents of `count` bytes at `offset`.
    public func extents(count: UInt64, at offset: UInt64) -> [Extent] {
        // Binary search for the run holding `offset`.
        var low = 0
        var high = runs.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if runs[middle].start <= offset { low = middle } else { high = middle - 1 }
        }
        var result: [Extent] = []
        var position = offset
        let end = offset + count
        var index = low
        while position < end, index < runs.count {
            let run = runs[index]
            let length = min(run.end, end) - position
            if let last = result.last, last.flags == run.flags {
                result[result.count - 1].length += length
            } else {
                result.append(Extent(length: length, flags: run.flags))
            }
            position += length
            index += 1
        }
        return result
    }
}
