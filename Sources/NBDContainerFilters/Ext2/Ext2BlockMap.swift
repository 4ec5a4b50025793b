/// Where a file's blocks lie in the filesystem image: runs of consecutive file blocks stored in
/// consecutive image blocks. Blocks in no run are holes.
///
/// The filter reads this map once per file (with libext2fs) and then serves reads, and writes to
/// blocks that are already allocated, straight from the layer below, without libext2fs: a 4 KiB
/// read is one read below.
struct Ext2BlockMap: Sendable, Hashable {
    /// Consecutive file blocks at consecutive image blocks.
    struct Run: Sendable, Hashable {
        /// The first file block.
        var logical: UInt64
        /// Where the first block is in the image, in blocks.
        var physical: UInt64
        /// How many blocks.
        var count: UInt64
        /// Preallocated but never written (an ext4 unwritten extent): reads as zeroes.
        var unwritten: Bool

        var end: UInt64 { logical + count }
    }

    /// A piece of a request, in bytes.
    struct Segment: Sendable, Hashable {
        enum Kind: Sendable, Hashable {
            /// Stored at this byte offset of the image.
            case stored(UInt64)
            /// A hole: reads as zeroes, and writing it needs libext2fs to allocate blocks.
            case hole
            /// Allocated but unwritten: reads as zeroes, and writing it needs libext2fs to mark it written.
            case unwritten
        }
        /// Where the piece starts, counted from the request's first byte.
        var start: Int
        var count: Int
        var kind: Kind
    }

    let blockSize: UInt64
    /// Sorted by `logical`, not overlapping.
    private(set) var runs: [Run] = []

    init(blockSize: UInt64) {
        self.blockSize = blockSize
    }

    /// Adds the mapping of file block `logical` (`physical` 0 for a hole), extending the last run
    /// when it continues it. Blocks must be appended in increasing order.
    mutating func append(logical: UInt64, physical: UInt64, unwritten: Bool) {
        append(logical: logical, physical: physical, count: 1, unwritten: unwritten)
    }

    /// Adds `count` file blocks from `logical` stored from image block `physical` (one extent).
    /// Extents must be appended in increasing order.
    mutating func append(logical: UInt64, physical: UInt64, count: UInt64, unwritten: Bool) {
        guard count > 0, physical != 0 else { return }
        if var last = runs.last, last.end == logical, last.physical + last.count == physical,
            last.unwritten == unwritten
        {
            last.count += count
            runs[runs.count - 1] = last
        } else {
            runs.append(Run(logical: logical, physical: physical, count: count, unwritten: unwritten))
        }
    }

    /// Replaces the mapping of the file blocks in `blocks` with `other`'s runs in that range.
    mutating func replace(_ blocks: Range<UInt64>, with other: Ext2BlockMap) {
        var kept: [Run] = []
        kept.reserveCapacity(runs.count + other.runs.count)
        for run in runs {
            if run.end <= blocks.lowerBound || run.logical >= blocks.upperBound {
                kept.append(run)
                continue
            }
            // Keep the parts of the run outside `blocks`.
            if run.logical < blocks.lowerBound {
                kept.append(
                    Run(
                        logical: run.logical, physical: run.physical, count: blocks.lowerBound - run.logical,
                        unwritten: run.unwritten))
            }
            if run.end > blocks.upperBound {
                let skip = blocks.upperBound - run.logical
                kept.append(
                    Run(
                        logical: blocks.upperBound, physical: run.physical + skip, count: run.count - skip,
                        unwritten: run.unwritten))
            }
        }
        kept.append(contentsOf: other.runs.filter { $0.logical >= blocks.lowerBound && $0.end <= blocks.upperBound })
        kept.sort { $0.logical < $1.logical }
        runs = kept
    }

    /// The index of the run holding `block` or, if it is in a hole, of the first run after it.
    private func firstRun(endingAfter block: UInt64) -> Int {
        var low = 0
        var high = runs.count
        while low < high {
            let middle = (low + high) / 2
            if runs[middle].end <= block { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Splits `count` bytes at file offset `offset` into stored pieces, holes and unwritten pieces.
    func segments(offset: UInt64, count: Int) -> [Segment] {
        var result: [Segment] = []
        var position = offset
        let end = offset + UInt64(count)
        var index = firstRun(endingAfter: offset / blockSize)
        while position < end {
            let block = position / blockSize
            let kind: Segment.Kind
            let pieceEnd: UInt64
            if index < runs.count, runs[index].logical <= block {
                let run = runs[index]
                pieceEnd = min(end, run.end * blockSize)
                kind =
                    run.unwritten
                    ? .unwritten : .stored((run.physical + block - run.logical) * blockSize + position % blockSize)
                index += 1
            } else {
                pieceEnd = index < runs.count ? min(end, runs[index].logical * blockSize) : end
                kind = .hole
            }
            result.append(Segment(start: Int(position - offset), count: Int(pieceEnd - position), kind: kind))
            position = pieceEnd
        }
        return result
    }
}
