import NBDCore

/// Reads the `extents` method's output: one `OFFSET LENGTH [TYPE]` line per extent, offsets
/// absolute and sizes in nbdkit's size format (`1M`); TYPE is a number (bit 0 hole, bit 1 zero),
/// missing (data), or words containing `hole` and `zero`.
package enum ExtentList {
    /// The extents from `offset` for at most `count` bytes. Extents before `offset` are skipped and
    /// the ones that overlap the range are clipped, as nbdkit does.
    ///
    /// - Throws: ``NBDError`` (`EIO`) for a line that cannot be read, extents that are not in
    ///   ascending contiguous order, or none covering `offset`.
    package static func parse(_ output: [UInt8], count: UInt64, offset: UInt64, context: String) throws(NBDError)
        -> [Extent]
    {
        let text = String(decoding: output, as: UTF8.self)
        let end = offset + count
        var extents: [Extent] = []
        var expected: UInt64? = nil
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard fields.count >= 2 else {
                if fields.isEmpty { continue }
                throw NBDError(.ioError, "\(context): cannot read the line '\(line)': expected OFFSET LENGTH [TYPE]")
            }
            let start: UInt64
            let length: UInt64
            do {
                start = try parseSize(String(fields[0]), for: "offset")
                length = try parseSize(String(fields[1]), for: "length")
            } catch {
                throw NBDError(.ioError, "\(context): cannot read the line '\(line)': \(error.message)")
            }
            let flags = fields.count > 2 ? Self.flags(fields[2]) : []
            if let expected, start != expected {
                throw NBDError(
                    .ioError,
                    "\(context): the extent at \(start) does not follow the previous one, which ended at \(expected): extents must be in order and contiguous"
                )
            }
            if expected == nil && start > offset {
                throw NBDError(
                    .ioError, "\(context): the first extent starts at \(start), after the offset asked for, \(offset)")
            }
            expected = start + length
            guard length > 0 else { continue }
            let from = max(start, offset)
            let to = min(start + length, end)
            guard from < to else {
                if start >= end { break }
                continue
            }
            if let last = extents.last, last.flags == flags {
                extents[extents.count - 1].length += to - from
            } else {
                extents.append(Extent(length: to - from, flags: flags))
            }
        }
        guard !extents.isEmpty else {
            throw NBDError(.ioError, "\(context): no extent covers offset \(offset)")
        }
        return extents
    }

    private static func flags(_ field: Substring) -> Extent.Flags {
        if let number = UInt32(field) { return Extent.Flags(rawValue: number & 3) }
        var flags: Extent.Flags = []
        if field.contains("hole") { flags.insert(.hole) }
        if field.contains("zero") { flags.insert(.zero) }
        return flags
    }
}
