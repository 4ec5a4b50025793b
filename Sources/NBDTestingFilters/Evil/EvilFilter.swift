import NBDCore
import Synchronization

/// nbdkit's evil filter for one connection: corrupts data as it is read, to test file system
/// checksums and clients' error handling. Writes are not changed, so the layer below keeps the
/// right data.
///
/// ```swift
/// let evil = EvilState(EvilConfiguration(mode: .cosmicRays, probability: 1e-6, seed: 42))
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in EvilFilter(wrapping: next, state: evil) }
/// ```
public struct EvilFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The configuration and random stream every connection shares.
    public let state: EvilState

    /// Wraps `next`.
    public init(wrapping next: Next, state: EvilState) {
        self.next = next
        self.state = state
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try await next.read(into: buffer, at: offset, flags: flags)
        state.corrupt(buffer, at: offset)
    }
}

/// What every connection of an evil export shares: the configuration and, for cosmic rays and
/// stuck bits seen only sometimes, one random stream started from the seed (so a run with a
/// given seed and request order repeats).
public final class EvilState: Sendable {
    /// The parameters.
    public let configuration: EvilConfiguration
    let corruptor: BitCorruptor
    private let random: LockedValue<SplitMix>

    /// Creates the shared state.
    public init(_ configuration: EvilConfiguration) {
        self.configuration = configuration
        corruptor = BitCorruptor(configuration)
        random = LockedValue(SplitMix(UInt64(configuration.seed) ^ 0x5eed_0f_e71))
    }

    private func nextSeed() -> UInt64 {
        random.withLock { $0.next() }
    }

    /// Corrupts `buffer`, just read from `offset`.
    func corrupt(_ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) {
        switch configuration.mode {
        case .cosmicRays:
            corruptor.flip(buffer, start: nextSeed())
        case .stuckBits, .stuckWires:
            var volatile = SplitMix(configuration.stuckProbability < 1 ? nextSeed() : 0)
            // Bit positions of the disk repeat every 2^60 bytes, so that offset * 8 cannot overflow.
            let base = configuration.mode == .stuckBits ? (offset & ((1 << 60) - 1)) * 8 : 0
            corruptor.stick(buffer, base: base, volatile: &volatile)
        }
    }
}
