import NBDCore

/// The remapping of the map filter: each `map=START-END:DEST` rule sends the bytes `START...END`
/// (inclusive) to `DEST...` in the layer below; the first rule given wins where rules overlap, and
/// bytes no rule covers map to themselves.
public struct RangeMap: Sendable, Hashable {
    /// One rule as given.
    public struct Rule: Sendable, Hashable {
        /// The first byte the rule covers.
        public var start: UInt64
        /// The last byte the rule covers (inclusive).
        public var end: UInt64
        /// Where `start` lands in the layer below.
        public var destination: UInt64
        /// The text of the rule, for errors.
        public var text: String

        /// Parses `START-END:DEST` (sizes such as `512` or `1M`).
        public init(parsing text: String) throws(NBDError) {
            let invalid = NBDError(
                .invalidArgument, "map=\(text): expected START-END:DEST, such as map=0-511:512 (END inclusive)")
            guard let dash = text.firstIndex(of: "-"), let colon = text.lastIndex(of: ":"), dash < colon else {
                throw invalid
            }
            guard let start = try? parseSize(String(text[..<dash]), for: "map"),
                let end = try? parseSize(String(text[text.index(after: dash)..<colon]), for: "map"),
                let destination = try? parseSize(String(text[text.index(after: colon)...]), for: "map")
            else { throw invalid }
            guard end >= start else {
                throw NBDError(.invalidArgument, "map=\(text): END is before START")
            }
            self.start = start
            self.end = end
            self.destination = destination
            self.text = text
        }
    }

    /// A run of bytes mapped the same way: `[start, end)` goes to `destination...`.
    struct Region: Sendable, Hashable {
        var start: UInt64
        var end: UInt64
        var destination: UInt64
        /// The rule, or `nil` for the implicit one-to-one mapping.
        var rule: String?
    }

    /// Regions sorted by start, covering `0..<2^63` without gaps.
    let regions: [Region]

    /// Builds the map from `rules` in command-line order.
    public init(rules: [Rule]) {
        var regions = [Region(start: 0, end: UInt64(Int64.max), destination: 0, rule: nil)]
        // Paint the rules last to first, so that the first rule given lies on top.
        for rule in rules.reversed() {
            let start = rule.start
            let end = min(rule.end, UInt64(Int64.max) - 1) + 1
            var painted: [Region] = []
            for region in regions {
                if region.end <= start || region.start >= end {
                    painted.append(region)
                    continue
                }
                if region.start < start {
                    painted.append(Region(start: region.start, end: start, destination: region.destination, rule: region.rule))
                }
                if region.end > end {
                    let shift = end - region.start
                    painted.append(
                        Region(start: end, end: region.end, destination: region.destination + shift, rule: region.rule))
                }
            }
            painted.append(Region(start: start, end: end, destination: rule.destination, rule: rule.text))
            painted.sort { $0.start < $1.start }
            regions = painted
        }
        self.regions = regions
    }

    /// The region holding `offset`.
    func region(at offset: UInt64) -> Region {
        var low = 0
        var high = regions.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if regions[middle].start <= offset { low = middle } else { high = middle - 1 }
        }
        return regions[low]
    }

    /// Calls `body` for each piece of `count` bytes at `offset`: the piece's position in the request,
    /// its length and where it lies below. A piece that would go past `size` fails with `EIO`, as in
    /// nbdkit, naming the rule.
    func forEachPiece(
        count: UInt64, at offset: UInt64, size: UInt64, _ operation: String,
        _ body: (_ position: UInt64, _ length: UInt64, _ below: UInt64) async throws(NBDError) -> Void
    ) async throws(NBDError) {
        var position: UInt64 = 0
        while position < count {
            let here = offset + position
            let region = region(at: here)
            let length = min(region.end - here, count - position)
            let below = region.destination + (here - region.start)
            guard below <= size, length <= size - below else {
                throw NBDError(
                    .ioError,
                    "map: \(operation) at offset \(here) maps beyond the end of the layer below (\(size) bytes), by \(region.rule.map { "map=\($0)" } ?? "the one-to-one mapping")"
                )
            }
            try await body(position, length, below)
            position += length
        }
    }
}
