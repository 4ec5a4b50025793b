import NBDCore
import Synchronization

/// How far ahead to prefetch, adapted to the access pattern as nbdkit's readahead filter does
/// since its rewrite in 1.32: the window starts at 32 KiB, doubles (up to 4 MiB) when a read moving
/// forward goes past the end of the previous prefetch, stays while reads move forward within it,
/// and falls back to 32 KiB when a read does not move forward.
///
/// nbdkit doubles only when a read *starts* past the previous prefetch, so sequential reads larger
/// than 32 KiB keep a 32 KiB window that covers a small part of the next read; its documentation
/// promises a window that adapts to accelerate sequential reads. Here a forward read that *ends*
/// past the prefetch also doubles it. Small sequential reads behave exactly as in nbdkit (its
/// test-readahead.sh: 512-byte reads, each followed by a 32 KiB prefetch).
///
/// One window serves every connection of the server, as in nbdkit.
package final class ReadAheadWindow: Sendable {
    /// The smallest window.
    package static let minimum: UInt64 = 32 << 10
    /// The largest window.
    package static let maximum: UInt64 = 4 << 20

    private struct State {
        var window = ReadAheadWindow.minimum
        var lastOffset: UInt64 = 0
        var lastReadAhead: UInt64 = 0
    }

    private let state = LockedValue(State())

    package init() {}

    /// The current window size.
    package var size: UInt64 { state.withLock { $0.window } }

    /// Records a read of `count` bytes at `offset` in an export of `exportSize` bytes and returns the
    /// range to prefetch after it, or `nil` when the read ends at the end of the export.
    package func afterRead(count: UInt64, at offset: UInt64, exportSize: UInt64) -> (offset: UInt64, count: UInt64)? {
        state.withLock { state in
            let start = offset + count
            let prefetch: (offset: UInt64, count: UInt64)? =
                start < exportSize ? (start, min(state.window, exportSize - start)) : nil
            // The window for the *next* read, from how this read relates to the last prefetch.
            if state.lastOffset < offset && state.lastReadAhead < start {
                state.window = min(state.window * 2, Self.maximum)
            } else if state.lastOffset < offset {
                // Still moving forward inside the prefetched range: keep the window.
            } else {
                state.window = Self.minimum
            }
            state.lastOffset = offset
            state.lastReadAhead = start + (prefetch?.count ?? 0)
            return prefetch
        }
    }
}
