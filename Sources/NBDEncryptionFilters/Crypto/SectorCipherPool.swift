import NBDCore
import Synchronization

/// The cipher handles of one unlocked volume, shared by every connection that opens it: a request
/// takes a handle, uses it without waiting for anything else, and gives it back, so there are as
/// many handles as requests ever ran at once and none is keyed twice for the same request.
final class SectorCipherPool: Sendable {
    let spec: LUKSCipherSpec
    private let key: [UInt8]
    private let idle = LockedValue<[SectorCipher]>([])

    /// A pool for `spec` keyed with `key` (the volume's master key). Keys one handle at once, so
    /// that a key GnuTLS refuses fails when the volume opens rather than on the first request.
    init(spec: LUKSCipherSpec, key: [UInt8]) throws(NBDError) {
        self.spec = spec
        self.key = key
        let first = try SectorCipher(spec: spec, key: key)
        idle.withLock { $0.append(first) }
    }

    /// A handle for the caller alone until it calls ``checkIn(_:)``.
    func checkOut() throws(NBDError) -> SectorCipher {
        if let cipher = idle.withLock({ $0.popLast() }) { return cipher }
        return try SectorCipher(spec: spec, key: key)
    }

    /// Gives back a handle taken with ``checkOut()``.
    func checkIn(_ cipher: SectorCipher) {
        idle.withLock { $0.append(cipher) }
    }

    /// Decrypts `sectors` in place with a handle from the pool (see ``SectorCipher/decrypt(_:firstSector:)``).
    func decrypt(_ sectors: UnsafeMutableRawBufferPointer, firstSector: UInt64) throws(NBDError) {
        let cipher = try checkOut()
        defer { checkIn(cipher) }
        try cipher.decrypt(sectors, firstSector: firstSector)
    }
}
