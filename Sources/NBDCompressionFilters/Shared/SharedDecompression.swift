import NBDCore
import Synchronization

/// The one decompressed copy a gzip or bzip2 layer shares between its connections, made by the
/// first connection to open and awaited by any that open while it is being made (nbdkit makes it
/// once, under a lock, in the first connection's `prepare`).
///
/// A failed decompression is not kept: the next connection tries again (and, for a corrupt file,
/// is refused with the same message).
final class SharedDecompression: Sendable {
    private typealias Making = Task<Result<DecompressedFile, NBDError>, Never>
    private let state = LockedValue<Making?>(nil)
    private let decompress: @Sendable (AnyBlockBackend) async -> Result<DecompressedFile, NBDError>

    /// `decompress` makes the copy from the layer below of the connection that opens first.
    init(decompress: @escaping @Sendable (AnyBlockBackend) async -> Result<DecompressedFile, NBDError>) {
        self.decompress = decompress
    }

    /// The decompressed copy, made now from `next` if no connection made it before.
    func file(from next: AnyBlockBackend) async throws(NBDError) -> DecompressedFile {
        let decompress = self.decompress
        let making = state.withLock { (making: inout Making?) -> Making in
            if let making { return making }
            let started = Making { await decompress(next) }
            making = started
            return started
        }
        let result = await making.value
        if case .failure = result {
            state.withLock { if $0 == making { $0 = nil } }
        }
        return try result.get()
    }

    /// Drops the copy (its space returns to the filesystem once no connection reads it).
    func release() {
        state.withLock { $0 = nil }
    }
}
