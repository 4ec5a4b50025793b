import CGnuTLS
import NBDCore

/// One GnuTLS cipher handle keyed for a LUKS volume, which encrypts and decrypts whole 512-byte
/// sectors in place, each with the IV its sector number gives.
///
/// A handle carries state (the IV set last), so one request at a time uses it: a
/// ``SectorCipherPool`` hands it out and takes it back. It also owns a scratch buffer for writes,
/// whose data must not be encrypted in the caller's buffer. Nothing is allocated per sector or
/// per request once the scratch buffer has grown to the request size.
final class SectorCipher: @unchecked Sendable {
    // @unchecked Sendable: used by one request at a time, handed between tasks only through the
    // pool's lock.

    /// LUKS encrypts in sectors of 512 bytes whatever the device's sector size (LUKSv1).
    static let sectorSize = 512
    /// The largest scratch buffer a handle keeps between requests; larger writes go in pieces.
    static let scratchLimit = 4 << 20

    private let handle: gnutls_cipher_hd_t
    /// AES under the hash of the key, for the `essiv` IV generator; `nil` otherwise.
    private let essivHandle: gnutls_cipher_hd_t?
    private let ivGenerator: LUKSCipherSpec.IVGenerator
    /// The IV of the sector being processed, then 16 zero bytes (ESSIV's own, fixed IV).
    private let ivBuffer: UnsafeMutableRawBufferPointer
    private var scratchBuffer: UnsafeMutableRawBufferPointer

    /// Keys a handle for `spec` with `key` (`spec.keyBytes` long).
    ///
    /// - Throws: `NBDError` (`EIO`) when GnuTLS refuses the key (XTS refuses one whose two halves
    ///   are equal).
    init(spec: LUKSCipherSpec, key: UnsafeRawBufferPointer) throws(NBDError) {
        handle = try Self.open(spec.algorithm, key: key, what: spec.description)
        ivGenerator = spec.ivGenerator
        if case .essiv(let hash) = spec.ivGenerator {
            let salt = UnsafeMutableRawBufferPointer.allocate(byteCount: hash.length, alignment: 16)
            defer {
                salt.initializeMemory(as: UInt8.self, repeating: 0)
                salt.deallocate()
            }
            do {
                try hash.hash(key, into: salt.baseAddress!)
                let algorithm =
                    switch hash.length {
                    case 16: GNUTLS_CIPHER_AES_128_CBC
                    case 24: GNUTLS_CIPHER_AES_192_CBC
                    default: GNUTLS_CIPHER_AES_256_CBC
                    }
                essivHandle = try Self.open(algorithm, key: UnsafeRawBufferPointer(salt), what: "the ESSIV cipher")
            } catch {
                gnutls_cipher_deinit(handle)
                throw error
            }
        } else {
            essivHandle = nil
        }
        ivBuffer = .allocate(byteCount: 2 * LUKSCipherSpec.ivSize, alignment: 16)
        ivBuffer.initializeMemory(as: UInt8.self, repeating: 0)
        scratchBuffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    /// Keys a handle for `spec` with `key` (see ``init(spec:key:)-(_,UnsafeRawBufferPointer)``).
    convenience init(spec: LUKSCipherSpec, key: [UInt8]) throws(NBDError) {
        let buffer = OwnedBytes(key)
        try self.init(spec: spec, key: buffer.bytes)
    }

    deinit {
        gnutls_cipher_deinit(handle)
        if let essivHandle { gnutls_cipher_deinit(essivHandle) }
        ivBuffer.deallocate()
        scratchBuffer.deallocate()
    }

    private static func open(_ algorithm: gnutls_cipher_algorithm_t, key: UnsafeRawBufferPointer, what: String)
        throws(NBDError) -> gnutls_cipher_hd_t
    {
        var datum = gnutls_datum_t(
            data: UnsafeMutablePointer(mutating: key.baseAddress?.assumingMemoryBound(to: UInt8.self)),
            size: UInt32(key.count))
        var opened: gnutls_cipher_hd_t? = nil
        let status = gnutls_cipher_init(&opened, algorithm, &datum, nil)
        guard status == 0, let opened else { throw LUKSHash.failure("setting up \(what)", status) }
        return opened
    }

    /// Decrypts `sectors` (a multiple of 512 bytes) in place; the first is sector `firstSector`
    /// (counted from the start of the encrypted area, as LUKS numbers them).
    func decrypt(_ sectors: UnsafeMutableRawBufferPointer, firstSector: UInt64) throws(NBDError) {
        try process(sectors, firstSector: firstSector, encrypting: false)
    }

    /// Encrypts `sectors` (a multiple of 512 bytes) in place; the first is sector `firstSector`.
    func encrypt(_ sectors: UnsafeMutableRawBufferPointer, firstSector: UInt64) throws(NBDError) {
        try process(sectors, firstSector: firstSector, encrypting: true)
    }

    /// A buffer of at least `count` bytes (at most ``scratchLimit``) that stays this handle's until
    /// the handle goes back to its pool.
    func scratch(count: Int) -> UnsafeMutableRawBufferPointer {
        if scratchBuffer.count < count {
            scratchBuffer.deallocate()
            scratchBuffer = .allocate(byteCount: max(count, 64 << 10), alignment: 64)
        }
        return UnsafeMutableRawBufferPointer(rebasing: scratchBuffer[0..<count])
    }

    private func process(_ sectors: UnsafeMutableRawBufferPointer, firstSector: UInt64, encrypting: Bool)
        throws(NBDError)
    {
        let size = Self.sectorSize
        precondition(sectors.count % size == 0, "LUKS sectors are processed whole")
        guard let base = sectors.baseAddress else { return }
        let iv = ivBuffer.baseAddress!
        var sector = firstSector
        var position = 0
        while position < sectors.count {
            try setIV(for: sector, at: iv)
            gnutls_cipher_set_iv(handle, iv, LUKSCipherSpec.ivSize)
            let pointer = base + position
            // GnuTLS allows the output to be the input: each sector is processed in place.
            let status =
                encrypting
                ? gnutls_cipher_encrypt2(handle, pointer, size, pointer, size)
                : gnutls_cipher_decrypt2(handle, pointer, size, pointer, size)
            guard status == 0 else {
                throw LUKSHash.failure(
                    encrypting ? "encrypting sector \(sector)" : "decrypting sector \(sector)", status)
            }
            position += size
            sector &+= 1
        }
    }

    private func setIV(for sector: UInt64, at iv: UnsafeMutableRawPointer) throws(NBDError) {
        switch ivGenerator {
        case .plain:
            iv.storeBytes(of: UInt64(UInt32(truncatingIfNeeded: sector)).littleEndian, as: UInt64.self)
            iv.storeBytes(of: 0, toByteOffset: 8, as: UInt64.self)
        case .plain64:
            iv.storeBytes(of: sector.littleEndian, as: UInt64.self)
            iv.storeBytes(of: 0, toByteOffset: 8, as: UInt64.self)
        case .essiv:
            iv.storeBytes(of: sector.littleEndian, as: UInt64.self)
            iv.storeBytes(of: 0, toByteOffset: 8, as: UInt64.self)
            // One AES block in CBC with a zero IV is AES itself (GnuTLS offers no ECB).
            let essiv = essivHandle!
            gnutls_cipher_set_iv(essiv, iv + LUKSCipherSpec.ivSize, LUKSCipherSpec.ivSize)
            let status = gnutls_cipher_encrypt2(essiv, iv, LUKSCipherSpec.ivSize, iv, LUKSCipherSpec.ivSize)
            guard status == 0 else { throw LUKSHash.failure("computing the ESSIV of sector \(sector)", status) }
        }
    }
}
