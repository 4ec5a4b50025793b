import NBDCore
import Synchronization

/// The one decompressed copy a gzip or bzip2 layer shares between its connections, made by the
/// first connection to open and awaited by any that open while it is being made (nbdkit makes it
/// once, under a lock, in the first connection's `prepare`).
///
/// The copy is made on the opening connection's own task (so on that connection's thread in
/// `nbd-serve`), not on a task of its own: decompressing a large image takes long, and the
/// cooperative pool has as many threads as cores. A failed decompression is not kept: the next
/// connection tries again (and, for a corrupt file, is refused with the same message).
final class SharedDecompression: Sendable {
    private typealias Outcome = Result<DecompressedFile, NBDError>

    private enum State {
        case idle
        /// A connection is decompressing; these connections wait for its outcome (`nil`: try again).
        case making(waiters: [CheckedContinuation<Outcome?, Never>])
        case ready(DecompressedFile)
    }

    private let state = LockedValue<State>(.idle)
    private let decompress: @Sendable (AnyBlockBackend) async -> Outcome

    /// `decompress` makes the copy from the layer below of the connection that opens first.
    init(decompress: @escaping @Sendable (AnyBlockBackend) async -> Result<DecompressedFile, NBDError>) {
        self.decompress = decompress
    }

    /// The decompressed copy, made now from `next` if no connection made it before.
    func file(from next: AnyBlockBackend) async throws(NBDError) -> DecompressedFile {
        while true {
            enum Role {
                case ready(DecompressedFile)
                case maker
                case waiter
            }
            let role = state.withLock { (state: inout State) -> Role in
                switch state {
                case .ready(let file): return .ready(file)
                case .idle:
                    state = .making(waiters: [])
                    return .maker
                case .making: return .waiter
                }
            }
            switch role {
            case .ready(let file):
                return file
            case .maker:
                let outcome = await decompress(next)
                let waiters = state.withLock { (state: inout State) -> [CheckedContinuation<Outcome?, Never>] in
                    guard case .making(let waiters) = state else { return [] }
                    if case .success(let file) = outcome { state = .ready(file) } else { state = .idle }
                    return waiters
                }
                for waiter in waiters { waiter.resume(returning: outcome) }
                return try outcome.get()
            case .waiter:
                let outcome: Outcome? = await withCheckedContinuation { continuation in
                    let settled = state.withLock { (state: inout State) -> Outcome?? in
                        switch state {
                        case .making(var waiters):
                            waiters.append(continuation)
                            state = .making(waiters: waiters)
                            return .none
                        case .ready(let file): return .some(.success(file))
                        // The maker failed in between: try again, as the maker this time.
                        case .idle: return .some(nil)
                        }
                    }
                    if let settled { continuation.resume(returning: settled) }
                }
                if let outcome { return try outcome.get() }
            }
        }
    }

    /// Drops the copy (its space returns to the filesystem once no connection reads it).
    func release() {
        state.withLock { state in
            if case .ready = state { state = .idle }
        }
    }
}
