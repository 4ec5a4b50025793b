import NBDCore
import Synchronization

/// The filesystem an ``Ext2Layer`` opens once, for its first connection, over a layer below opened
/// for it alone, and shares with every later connection until the server shuts down (nbdkit opens
/// its one instance when the server starts). A failed open is not kept: the next connection tries
/// again, and is refused with the same message when the image is still not ext2/3/4.
final class Ext2SharedFilesystem: Sendable {
    private typealias Opening = Task<Result<Ext2Filesystem, NBDError>, Never>
    private let state = LockedValue<Opening?>(nil)

    /// The shared filesystem, opened now if this is the first connection.
    func filesystem(for connection: ConnectionInfo, below openBelow: @escaping OpenBelow, library: LibExt2fs)
        async throws(NBDError) -> Ext2Filesystem
    {
        let opening = state.withLock { (state: inout Opening?) -> Opening in
            if let state { return state }
            // As nbdkit does, the layer below is asked for the default export: the client's export
            // name picks a file inside the filesystem, not the image.
            var info = connection
            info.exportName = ""
            let opening = Opening { () async -> Result<Ext2Filesystem, NBDError> in
                let below: AnyBlockBackend
                do throws(NBDError) {
                    below = try await openBelow(info)
                } catch {
                    return .failure(error)
                }
                do throws(NBDError) {
                    return .success(try await Ext2Filesystem.open(below, writable: !info.isReadOnly, library: library))
                } catch {
                    await below.close()
                    return .failure(error)
                }
            }
            state = opening
            return opening
        }
        let result = await opening.value
        if case .failure = result {
            state.withLock { state in if state == opening { state = nil } }
        }
        return try result.get()
    }

    /// Closes the filesystem (writing its metadata) and its layer below, if it was opened.
    func close() async {
        let opening = state.withLock { (state: inout Opening?) -> Opening? in
            defer { state = nil }
            return state
        }
        if case .success(let filesystem) = await opening?.value { await filesystem.close() }
    }
}
