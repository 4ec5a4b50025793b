import NBDCore

/// LUKS's anti-forensic merge: rebuilds a key from the stripes it was split into. Each stripe but
/// the last is XORed into an accumulator that is then diffused (hashed block by block), and the
/// last stripe XORed in gives the key. Wiping any one stripe on disk destroys the key, which is the
/// point of the split.
enum AntiForensicMerge {
    /// The key of `keyBytes` bytes that `stripes` stripes of `material` (at least
    /// `keyBytes * stripes` bytes) merge into, diffusing with `hash`.
    static func merge(_ material: UnsafeRawBufferPointer, keyBytes: Int, stripes: Int, hash: LUKSHash)
        throws(NBDError) -> [UInt8]
    {
        precondition(stripes > 0 && material.count >= keyBytes * stripes, "the header check bounds the stripes")
        var accumulator = [UInt8](repeating: 0, count: keyBytes)
        // The block index (big-endian) then one digest-sized block of the accumulator.
        let input = OwnedBytes(count: 4 + hash.length)
        let digest = OwnedBytes(count: hash.length)
        for stripe in 0..<stripes {
            let base = stripe * keyBytes
            for index in 0..<keyBytes { accumulator[index] ^= material[base + index] }
            guard stripe < stripes - 1 else { break }
            try diffuse(&accumulator, hash: hash, input: input.writable, digest: digest.writable)
        }
        return accumulator
    }

    /// Replaces each digest-sized block of `data` with the hash of its index and itself (the last,
    /// shorter block with the first bytes of its hash).
    private static func diffuse(
        _ data: inout [UInt8], hash: LUKSHash, input: UnsafeMutableRawBufferPointer,
        digest: UnsafeMutableRawBufferPointer
    ) throws(NBDError) {
        let blockSize = hash.length
        var block = 0
        while block * blockSize < data.count {
            let start = block * blockSize
            let length = min(blockSize, data.count - start)
            input[0] = UInt8(truncatingIfNeeded: block >> 24)
            input[1] = UInt8(truncatingIfNeeded: block >> 16)
            input[2] = UInt8(truncatingIfNeeded: block >> 8)
            input[3] = UInt8(truncatingIfNeeded: block)
            for index in 0..<length { input[4 + index] = data[start + index] }
            try hash.hash(UnsafeRawBufferPointer(rebasing: input[0..<(4 + length)]), into: digest.baseAddress!)
            for index in 0..<length { data[start + index] = digest[index] }
            block += 1
        }
    }
}
