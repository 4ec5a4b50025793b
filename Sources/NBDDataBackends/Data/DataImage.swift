import NBDCore

/// A sparse image built from the data format: runs of bytes and of repeated bytes at offsets, with
/// zeroes between them, and a size (the furthest the offset reached).
///
/// Later stores overwrite earlier ones, and pasting a nested image overwrites its whole extent,
/// zeroes included, as nbdkit's evaluator does.
struct DataImage: Sendable {
    /// What a run holds.
    enum Content: Sendable {
        case bytes(ArraySlice<UInt8>)
        case fill(UInt8, UInt64)

        var length: UInt64 {
            switch self {
            case .bytes(let bytes): UInt64(bytes.count)
            case .fill(_, let count): count
            }
        }

        /// Bytes `range` (relative to the run's start) of this content.
        func slice(_ range: Range<UInt64>) -> Content {
            switch self {
            case .bytes(let bytes):
                let start = bytes.startIndex + Int(range.lowerBound)
                return .bytes(bytes[start..<start + range.count])
            case .fill(let byte, _):
                return .fill(byte, UInt64(range.count))
            }
        }
    }

    /// Content at an offset.
    struct Run: Sendable {
        var start: UInt64
        var content: Content
        var end: UInt64 { start + content.length }
    }

    /// The runs, sorted by offset and not overlapping.
    private(set) var runs: [Run] = []
    /// The image size: the largest offset any expression reached.
    var size: UInt64 = 0

    /// The most runs an image may hold; beyond it the data string is refused as too complex.
    static let maximumRuns = 4_000_000

    /// Makes `range` read as zeroes.
    mutating func clear(_ range: Range<UInt64>) {
        guard !range.isEmpty, let last = runs.last, last.end > range.lowerBound else { return }
        var index = firstRun(endingAfter: range.lowerBound)
        var replacement: [Run] = []
        let first = index
        while index < runs.count && runs[index].start < range.upperBound {
            let run = runs[index]
            if run.start < range.lowerBound {
                replacement.append(Run(start: run.start, content: run.content.slice(0..<range.lowerBound - run.start)))
            }
            if run.end > range.upperBound {
                replacement.append(
                    Run(
                        start: range.upperBound,
                        content: run.content.slice(range.upperBound - run.start..<run.content.length)))
            }
            index += 1
        }
        runs.replaceSubrange(first..<index, with: replacement)
    }

    /// The index of the first run that ends after `offset`.
    private func firstRun(endingAfter offset: UInt64) -> Int {
        var low = 0
        var high = runs.count
        while low < high {
            let middle = (low + high) / 2
            if runs[middle].end <= offset { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Stores `content` at `offset`, over whatever was there.
    mutating func store(_ content: Content, at offset: UInt64) throws(NBDError) {
        let length = content.length
        guard length > 0 else { return }
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= UInt64(Int64.max) else {
            throw NBDError(.invalidArgument, "data: the image would be larger than 2^63 - 1 bytes")
        }
        if case .fill(0, _) = content {
            clear(offset..<end)
            return
        }
        if let last = runs.last, last.end > offset {
            clear(offset..<end)
        }
        let index = firstRun(endingAfter: offset)
        // Consecutive small stores (bytes of a string, a repeated short group) join the run before
        // them, so a pattern repeated thousands of times stays a few runs.
        if index == runs.count, index > 0, runs[index - 1].end == offset,
            case .bytes(var previous) = runs[index - 1].content, case .bytes(let next) = content,
            previous.count < 1 << 20
        {
            runs[index - 1].content = .fill(0, 0)
            previous.append(contentsOf: next)
            runs[index - 1].content = .bytes(previous)
            return
        }
        guard runs.count < Self.maximumRuns else {
            throw NBDError(
                .invalidArgument, "data: the data string makes more than \(Self.maximumRuns) separate runs of bytes")
        }
        runs.insert(Run(start: offset, content: content), at: index)
    }

    /// Stores bytes `range` of `other` at `offset`, zeroes included.
    mutating func paste(_ other: DataImage, range: Range<UInt64>, at offset: UInt64) throws(NBDError) {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(range.count))
        guard !overflow, end <= UInt64(Int64.max) else {
            throw NBDError(.invalidArgument, "data: the image would be larger than 2^63 - 1 bytes")
        }
        clear(offset..<end)
        var index = other.firstRun(endingAfter: range.lowerBound)
        while index < other.runs.count && other.runs[index].start < range.upperBound {
            let run = other.runs[index]
            let lower = max(run.start, range.lowerBound)
            let upper = min(run.end, range.upperBound)
            try store(run.content.slice(lower - run.start..<upper - run.start), at: offset + (lower - range.lowerBound))
            index += 1
        }
    }
}
