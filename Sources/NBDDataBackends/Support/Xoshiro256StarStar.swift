/// The xoshiro256** generator (Blackman and Vigna), seeded from one 64-bit number through splitmix64,
/// as nbdkit's random and sparse-random plugins use it.
///
/// nbdkit derives every byte of those exports from this generator, so using the same published
/// algorithm with the same seeding makes `random seed=N` and `sparse-random seed=N` serve the same
/// bytes as nbdkit does: checksums a script recorded against nbdkit stay valid.
struct Xoshiro256StarStar {
    private var s0: UInt64
    private var s1: UInt64
    private var s2: UInt64
    private var s3: UInt64

    /// A generator whose four words of state are the first four splitmix64 outputs from `seed`.
    @inline(__always)
    init(seed: UInt64) {
        var x = seed
        s0 = Self.splitMix(&x)
        s1 = Self.splitMix(&x)
        s2 = Self.splitMix(&x)
        s3 = Self.splitMix(&x)
    }

    @inline(__always)
    private static func splitMix(_ x: inout UInt64) -> UInt64 {
        x &+= 0x9e37_79b9_7f4a_7c15
        var z = x
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    @inline(__always)
    private static func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 - k))
    }

    /// The next 64 random bits.
    @inline(__always)
    mutating func next() -> UInt64 {
        let result = Self.rotateLeft(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = Self.rotateLeft(s3, 45)
        return result
    }
}
