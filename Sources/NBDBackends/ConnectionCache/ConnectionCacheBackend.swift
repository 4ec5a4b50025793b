import NBDCore
import Synchronization

/// One connection of a ``ConnectionCacheProvider``: a private snapshot of the export and the log of
/// ranges written into it since the last flush.
public final class ConnectionCacheBackend: BlockBackend {
    private struct State {
        var snapshot: SparseImage?
        var written: [(offset: UInt64, count: UInt64)] = []
    }

    public let capabilities: Capabilities
    private let store: ConnectionCacheStore
    private let exportName: String
    private let strictFUA: Bool
    private let state = LockedValue(State())

    init(store: ConnectionCacheStore, exportName: String, size: UInt64, strictFUA: Bool, isReadOnly: Bool) {
        self.store = store
        self.exportName = exportName
        self.strictFUA = strictFUA
        let caps = Capabilities(
            size: size, isWritable: true, canFlush: true, fua: .native, canTrim: true, canZero: true,
            canFastZero: false, cache: .native, canExtents: false, canMultiConn: false)
        self.capabilities = isReadOnly ? caps.readOnly : caps
    }

    /// Runs `body` on this connection's snapshot, taking one from the persistent image first if the
    /// connection has none (its "first access" since the last flush).
    private func withSnapshot<T>(_ body: (inout SparseImage, inout [(offset: UInt64, count: UInt64)]) -> T) -> T {
        state.withLock { state in
            if state.snapshot == nil {
                state.snapshot = store.snapshot(of: exportName)
            }
            return body(&state.snapshot!, &state.written)
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        withSnapshot { image, _ in image.read(into: buffer, at: offset) }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        withSnapshot { image, written in
            image.write(data, at: offset)
            written.append((offset, UInt64(data.count)))
        }
        if flags.contains(.fua) { persist(offset: offset, count: UInt64(data.count)) }
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        withSnapshot { image, written in
            image.zero(count: count, at: offset)
            written.append((offset, count))
        }
        if flags.contains(.fua) { persist(offset: offset, count: count) }
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try await zero(count: count, at: offset, flags: flags)
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        withSnapshot { _, _ in }
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        flushConnection()
    }

    /// What FUA means here: with `strictFUA` write just this range through (keeping the snapshot and
    /// the log), otherwise flush the whole connection.
    private func persist(offset: UInt64, count: UInt64) {
        guard strictFUA else { return flushConnection() }
        state.withLock { state in
            guard let snapshot = state.snapshot else { return }
            store.update(exportName) { $0.copyRange(from: snapshot, offset: offset, count: count) }
        }
    }

    /// Copies every range written since the last flush into the persistent image, in the order they
    /// were written, then drops the snapshot. An older write flushed late can overwrite newer data
    /// from another connection: that is the client misuse multi-conn exists to prevent.
    private func flushConnection() {
        state.withLock { state in
            if let snapshot = state.snapshot, !state.written.isEmpty {
                let ranges = state.written
                store.update(exportName) { image in
                    for range in ranges {
                        image.copyRange(from: snapshot, offset: range.offset, count: range.count)
                    }
                }
            }
            state.snapshot = nil
            state.written = []
        }
    }
}
