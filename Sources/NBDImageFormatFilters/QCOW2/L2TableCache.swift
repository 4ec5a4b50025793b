import NBDCore
import Synchronization

/// The L2 tables read so far, decoded, least recently used first out, bounded in bytes.
///
/// Shared by every connection of an image, so that a copy over four connections reads each table
/// once, and 4 KiB random reads cost a table lookup in memory instead of a read of the file. Two
/// reads that miss the same table at once both read it; the second insert is dropped.
final class L2TableCache: Sendable {
    private struct Entry {
        var table: [UInt64]
        var lastUse: UInt64
    }

    private struct State {
        var tables: [UInt64: Entry] = [:]
        var clock: UInt64 = 0
    }

    /// How many tables the cache keeps.
    let capacity: Int
    private let state = LockedValue(State())

    /// A cache of at most `bytes` of tables of `tableBytes` each (always at least one table).
    init(bytes: UInt64, tableBytes: UInt64) {
        capacity = Int(max(1, min(bytes / max(tableBytes, 1), 1 << 20)))
    }

    /// The table at file offset `offset`, now the most recently used, or `nil`.
    func table(at offset: UInt64) -> [UInt64]? {
        state.withLock { state in
            state.clock += 1
            guard var entry = state.tables[offset] else { return nil }
            entry.lastUse = state.clock
            state.tables[offset] = entry
            return entry.table
        }
    }

    /// Keeps `table`, read from file offset `offset`, dropping the least recently used table when full.
    func insert(_ table: [UInt64], at offset: UInt64) {
        state.withLock { state in
            state.clock += 1
            if state.tables[offset] == nil, state.tables.count >= capacity,
                let oldest = state.tables.min(by: { $0.value.lastUse < $1.value.lastUse })?.key
            {
                // A linear scan, on misses only: a miss reads a whole cluster of the file, which
                // costs far more than looking at a few hundred entries.
                state.tables[oldest] = nil
            }
            state.tables[offset] = Entry(table: table, lastUse: state.clock)
        }
    }

    /// How many tables are cached (for tests).
    var count: Int { state.withLock { $0.tables.count } }
}
