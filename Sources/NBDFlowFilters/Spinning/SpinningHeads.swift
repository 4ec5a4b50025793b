import NBDCore
import Synchronization

/// One connection's simulated heads: each serves an equal share of the disk and remembers where it
/// is; a seek waits, holding its head (or, with heads on one arm, the arm), for the time the
/// ``SeekCurve`` gives for the distance.
public final class SpinningHeads: Sendable {
    struct Head: Sendable {
        var start: UInt64
        var end: UInt64
        var position: UInt64
    }

    let curve: SeekCurve
    let separate: Bool
    private let heads: LockedValue<[Head]>
    /// One lock per head, held across a seek's wait; without separate heads only the first is used.
    private let locks: [AsyncLock]
    private let sleep: @Sendable (Duration) async throws(NBDError) -> Void

    /// Splits `size` bytes between `count` heads (fewer for a disk smaller than `count` bytes).
    package init(
        size: UInt64, count: Int, separate: Bool, curve: SeekCurve,
        sleep: @escaping @Sendable (Duration) async throws(NBDError) -> Void
    ) {
        let count = Int(min(UInt64(count), size))
        var heads: [Head] = []
        let step = count > 0 ? size / UInt64(count) : 0
        for index in 0..<count {
            let start = UInt64(index) * step
            let end = index == count - 1 ? size : start + step
            heads.append(Head(start: start, end: end, position: start))
        }
        self.heads = LockedValue(heads)
        self.locks = (0..<max(count, 1)).map { _ in AsyncLock() }
        self.separate = separate
        self.curve = curve
        self.sleep = sleep
    }

    /// Where each head is now (for tests).
    package var positions: [UInt64] { heads.withLock { $0.map(\.position) } }

    /// Moves the head responsible for `offset` there, waiting for the seek.
    func seek(to offset: UInt64) async throws(NBDError) {
        let found: (index: Int, start: UInt64, end: UInt64)? = heads.withLock { heads in
            guard let index = heads.firstIndex(where: { offset >= $0.start && offset < $0.end }) else { return nil }
            return (index, heads[index].start, heads[index].end)
        }
        guard let found else { return }
        let lock = locks[separate ? found.index : 0]
        try await lock.withLock { () async throws(NBDError) in
            let distance: UInt64 = heads.withLock { heads in
                let old = heads[found.index].position
                if separate {
                    heads[found.index].position = offset
                } else {
                    // One arm: every head moves to the same place in its own range.
                    let within = offset - found.start
                    for index in heads.indices {
                        heads[index].position = min(heads[index].start + within, heads[index].end - 1)
                    }
                }
                return old > offset ? old - offset : offset - old
            }
            let wait = curve.seekTime(distance: distance, range: found.end - found.start)
            if wait > .zero { try await sleep(wait) }
        }
    }
}
