#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import NBDCore

/// Chooses and corrupts bits in a read buffer for the evil filter.
///
/// Corrupt bits are spaced by a geometric distribution of the configured probability, so a read
/// costs time in proportion to the bits it corrupts, not to its length. For the stuck modes the
/// disk (or, for wires, the request) is divided into blocks whose random stream is seeded from
/// the seed and the block's index, so the same bits are stuck on every read.
struct BitCorruptor: Sendable {
    let configuration: EvilConfiguration
    /// log(1 - p), or `nil` when every bit is chosen (p > 1/8) or none (p < 1e-12 is handled by
    /// ``isOff``).
    let logComplement: Double?
    let isOff: Bool
    /// The length of a seeded block, in bits: a power of two holding about 100 chosen bits.
    let blockBits: UInt64

    init(_ configuration: EvilConfiguration) {
        self.configuration = configuration
        let p = configuration.probability
        isOff = p < 1e-12
        logComplement = p > 1.0 / 8 || isOff ? nil : log(1 - p)
        var bits: UInt64 = 1 << 16
        if !isOff, p <= 1.0 / 8 {
            let wanted = min(100 / p, Double(UInt64(1) << 50))
            while Double(bits) < wanted { bits <<= 1 }
        }
        blockBits = bits
    }

    /// The distance from one chosen bit to the next, drawn from `random`.
    private func gap(_ random: inout SplitMix) -> UInt64 {
        guard let logComplement else { return 0 }
        // U in (0, 1]: the geometric distribution's inverse.
        let uniform = (Double(random.next() >> 11) + 1) / Double(UInt64(1) << 53)
        let distance = (log(uniform) / logComplement).rounded(.down)
        return distance >= Double(UInt64(1) << 62) ? UInt64(1) << 62 : UInt64(distance)
    }

    /// Flips bits of `buffer` at random, the stream started from `start`.
    func flip(_ buffer: UnsafeMutableRawBufferPointer, start: UInt64) {
        guard !isOff else { return }
        var random = SplitMix(start)
        let end = UInt64(buffer.count) * 8
        var bit = gap(&random)
        while bit < end {
            buffer[Int(bit / 8)] ^= UInt8(1) << (bit % 8)
            bit += 1 + gap(&random)
        }
    }

    /// Applies the stuck bits of the pattern to `buffer`, whose first bit is bit `base` of the
    /// pattern (the disk offset times 8 for stuck bits, 0 for stuck wires). `volatile` decides,
    /// when the stuck probability is below 1, whether each read sees a stuck bit.
    func stick(_ buffer: UnsafeMutableRawBufferPointer, base: UInt64, volatile: inout SplitMix) {
        guard !isOff else { return }
        let end = base + UInt64(buffer.count) * 8
        var block = base / blockBits
        let threshold = configuration.stuckProbability
        while block * blockBits < end {
            var random = SplitMix(UInt64(configuration.seed) &* 0x9e37_79b9_7f4a_7c15 ^ block &* 0xd1b5_4a32_d192_ed03)
            var bit = block * blockBits + gap(&random)
            let blockEnd = (block + 1) * blockBits
            while bit < blockEnd && bit < end {
                let high = random.next() & 1 == 1
                if bit >= base, threshold >= 1 || Double(volatile.next() >> 11) / Double(UInt64(1) << 53) < threshold {
                    let index = Int((bit - base) / 8)
                    let mask = UInt8(1) << ((bit - base) % 8)
                    if high { buffer[index] |= mask } else { buffer[index] &= ~mask }
                }
                bit += 1 + gap(&random)
            }
            block += 1
        }
    }
}

/// A small, fast pseudo-random generator (SplitMix64): enough for choosing bits, not for secrets.
struct SplitMix: Sendable {
    private var state: UInt64

    init(_ seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
