import NBDCore

/// A LUKSv1 image unlocked with a passphrase: its header, where its data starts and the cipher
/// handles keyed with its master key.
final class LUKSVolume: Sendable {
    let header: LUKSHeader
    let ciphers: SectorCipherPool
    /// The key slot the passphrase opened (for messages and tests).
    let keySlot: Int

    private init(header: LUKSHeader, ciphers: SectorCipherPool, keySlot: Int) {
        self.header = header
        self.ciphers = ciphers
        self.keySlot = keySlot
    }

    /// Unlocks the image `next` serves, whose header is `header`, with `passphrase`: tries each
    /// active key slot in order (PBKDF2 of the passphrase with the slot's salt and iterations,
    /// decrypt its stripes, anti-forensic merge) until a candidate key's PBKDF2 digest matches the
    /// header's master-key digest.
    ///
    /// - Throws: `NBDError` (`EPERM`) when the passphrase opens no slot; the layer below's error
    ///   when the key material cannot be read.
    static func unlock(_ header: LUKSHeader, passphrase: [UInt8], below next: some BlockBackend)
        async throws(NBDError) -> LUKSVolume
    {
        var materials: [(slot: LUKSKeySlot, bytes: [UInt8])] = []
        for slot in header.keySlots where slot.isActive {
            let length = slot.keyMaterialLength(keyBytes: header.keyBytes)
            let buffer = OwnedBytes(count: length)
            try await next.read(into: buffer.writable, at: slot.keyMaterialOffset, flags: [])
            materials.append((slot, buffer.array))
        }
        let candidates = materials
        let found = try await BlockingWork.run { () throws(NBDError) -> (key: [UInt8], slot: Int)? in
            for (slot, bytes) in candidates {
                if let key = try masterKey(header, slot: slot, material: bytes, passphrase: passphrase) {
                    return (key, slot.index)
                }
            }
            return nil
        }
        guard let found else {
            let count = materials.count
            throw NBDError(
                .notPermitted,
                "luks: the passphrase is wrong: it opens none of the image's \(count) active key slot\(count == 1 ? "" : "s")"
            )
        }
        return LUKSVolume(
            header: header, ciphers: try SectorCipherPool(spec: header.cipher, key: found.key), keySlot: found.slot)
    }

    /// The master key `slot` holds when `passphrase` is its passphrase, or `nil`.
    static func masterKey(_ header: LUKSHeader, slot: LUKSKeySlot, material: [UInt8], passphrase: [UInt8])
        throws(NBDError) -> [UInt8]?
    {
        let slotKey = try header.hash.pbkdf2(
            password: passphrase, salt: slot.salt, iterations: slot.iterations, length: header.keyBytes)
        // The stripes are encrypted like data, numbered from sector 0 at the key material's start.
        let stripes = OwnedBytes(material)
        try SectorCipher(spec: header.cipher, key: slotKey).decrypt(stripes.writable, firstSector: 0)
        let candidate = try AntiForensicMerge.merge(
            stripes.bytes, keyBytes: header.keyBytes, stripes: slot.stripes, hash: header.hash)
        let digest = try header.hash.pbkdf2(
            password: candidate, salt: header.masterKeyDigestSalt, iterations: header.masterKeyDigestIterations,
            length: LUKSHeader.digestSize)
        return digest == header.masterKeyDigest ? candidate : nil
    }
}
