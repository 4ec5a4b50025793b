import NBDCore
import Synchronization

/// The last few decoded blocks, least recently used first out: nbdkit's xz block cache, which
/// keeps `xz-max-depth` blocks so that reads near each other decode a block once.
///
/// Reads run concurrently (nbdkit serializes them), so the cache also makes concurrent reads of one
/// uncached block wait for a single decode instead of each decoding it: a client that starts 64
/// reads of a one-block file at once would otherwise decode the whole file 64 times.
final class BlockCache: Sendable {
    private typealias Outcome = Result<DecodedBlock, NBDError>

    private struct State {
        /// Most recently used last. A handful of entries: a linear search costs less than a dictionary.
        var blocks: [DecodedBlock] = []
        /// Blocks being decoded, by uncompressed start, with the reads waiting for them (`nil`:
        /// the decode failed for another read; try again).
        var decoding: [UInt64: [CheckedContinuation<Outcome?, Never>]] = [:]
    }

    /// How many blocks the cache keeps.
    let depth: Int
    private let state = LockedValue(State())

    init(depth: Int) {
        self.depth = max(depth, 1)
    }

    /// The decoded block `block`, from the cache, from a decode another read started, or from
    /// `decode` (then cached).
    func block(
        _ block: CompressedBlock, decode: () async throws(NBDError) -> DecodedBlock
    ) async throws(NBDError) -> DecodedBlock {
        let start = block.uncompressedOffset
        while true {
            enum Step {
                case cached(DecodedBlock)
                case decode
                case wait
            }
            let step = state.withLock { (state: inout State) -> Step in
                if let cached = Self.take(start, from: &state) { return .cached(cached) }
                if state.decoding[start] != nil { return .wait }
                state.decoding[start] = []
                return .decode
            }
            switch step {
            case .cached(let decoded):
                return decoded
            case .decode:
                let outcome: Outcome
                do throws(NBDError) {
                    outcome = .success(try await decode())
                } catch {
                    outcome = .failure(error)
                }
                let waiters = state.withLock { (state: inout State) -> [CheckedContinuation<Outcome?, Never>] in
                    if case .success(let decoded) = outcome {
                        if state.blocks.count >= depth { state.blocks.removeFirst(state.blocks.count - depth + 1) }
                        state.blocks.append(decoded)
                    }
                    return state.decoding.removeValue(forKey: start) ?? []
                }
                for waiter in waiters { waiter.resume(returning: outcome) }
                return try outcome.get()
            case .wait:
                let outcome: Outcome? = await withCheckedContinuation { continuation in
                    let settled = state.withLock { (state: inout State) -> Outcome?? in
                        if state.decoding[start] != nil {
                            state.decoding[start]!.append(continuation)
                            return .none
                        }
                        if let cached = Self.take(start, from: &state) { return .some(.success(cached)) }
                        return .some(nil)
                    }
                    if let settled { continuation.resume(returning: settled) }
                }
                if let outcome { return try outcome.get() }
            }
        }
    }

    /// How many reads wait for a decode another read started (for tests).
    var waitingReads: Int {
        state.withLock { state in state.decoding.values.reduce(0) { $0 + $1.count } }
    }

    /// The cached block starting at `start`, now the most recently used.
    private static func take(_ start: UInt64, from state: inout State) -> DecodedBlock? {
        guard let position = state.blocks.lastIndex(where: { $0.start == start }) else { return nil }
        let block = state.blocks.remove(at: position)
        state.blocks.append(block)
        return block
    }
}
