/// One of the eight key slots of a LUKSv1 header: a copy of the master key, split into stripes
/// (anti-forensic split) and encrypted with a key derived from one passphrase.
struct LUKSKeySlot: Sendable, Hashable {
    /// The slot's position in the header, 0 to 7 (cryptsetup's key slot number).
    var index: Int
    /// Whether the slot holds a key (0x00AC71F3) rather than being free (0x0000DEAD).
    var isActive: Bool
    /// PBKDF2 iterations for the passphrase.
    var iterations: UInt32
    /// PBKDF2 salt, 32 bytes.
    var salt: [UInt8]
    /// Where the encrypted stripes start in the image, in bytes.
    var keyMaterialOffset: UInt64
    /// How many stripes the key was split into (4000 for every tool that writes LUKSv1).
    var stripes: Int

    /// The value of an active slot's `active` field.
    static let activeMarker: UInt32 = 0x00AC_71F3
    /// The value of a free slot's `active` field.
    static let inactiveMarker: UInt32 = 0x0000_DEAD

    /// The bytes of encrypted stripes for a key of `keyBytes`, rounded up to whole sectors (they
    /// are encrypted sector by sector).
    func keyMaterialLength(keyBytes: Int) -> Int {
        let sector = SectorCipher.sectorSize
        return (keyBytes * stripes + sector - 1) / sector * sector
    }
}
