import NBDCore
import Synchronization

/// The last few decoded blocks, least recently used first out: nbdkit's xz block cache, which
/// keeps `xz-max-depth` blocks so that reads near each other decode a block once.
final class BlockCache: Sendable {
    /// How many blocks the cache keeps.
    let depth: Int
    // Most recently used last. A handful of entries: a linear search costs less than a dictionary.
    private let blocks = LockedValue<[DecodedBlock]>([])

    init(depth: Int) {
        self.depth = max(depth, 1)
    }

    /// The cached block holding uncompressed byte `offset`, now the most recently used.
    func block(containing offset: UInt64) -> DecodedBlock? {
        blocks.withLock { blocks in
            guard let position = blocks.lastIndex(where: { $0.start <= offset && offset < $0.end }) else { return nil }
            let block = blocks.remove(at: position)
            blocks.append(block)
            return block
        }
    }

    /// Adds `block`, dropping the least recently used one when the cache is full.
    func insert(_ block: DecodedBlock) {
        blocks.withLock { blocks in
            // Two reads of one block at once both decode it; keep one copy.
            blocks.removeAll { $0.start == block.start }
            if blocks.count >= depth { blocks.removeFirst(blocks.count - depth + 1) }
            blocks.append(block)
        }
    }
}
