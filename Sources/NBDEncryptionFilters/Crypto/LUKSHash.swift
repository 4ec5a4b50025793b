import CGnuTLS
import NBDCore

/// A hash algorithm a LUKS header names: the `hash-spec` field (key-slot PBKDF2, anti-forensic
/// merge, master-key digest) and the hash of an `essiv:HASH` IV generator. GnuTLS computes it.
/// RIPEMD-160, which nbdkit names too, is left out: GnuTLS's PBKDF2 refuses it, so such an image
/// could never be opened.
enum LUKSHash: String, Sendable, Hashable, CaseIterable {
    case md5, sha1, sha224, sha256, sha384, sha512

    /// The algorithm a header spells `name` (cryptsetup and qemu write lower case), or `nil`.
    init?(named name: String) {
        self.init(rawValue: name.lowercased())
    }

    /// GnuTLS's identifier for the digest.
    var digest: gnutls_digest_algorithm_t {
        switch self {
        case .md5: GNUTLS_DIG_MD5
        case .sha1: GNUTLS_DIG_SHA1
        case .sha224: GNUTLS_DIG_SHA224
        case .sha256: GNUTLS_DIG_SHA256
        case .sha384: GNUTLS_DIG_SHA384
        case .sha512: GNUTLS_DIG_SHA512
        }
    }

    /// The digest's length in bytes.
    var length: Int {
        switch self {
        case .md5: 16
        case .sha1: 20
        case .sha224: 28
        case .sha256: 32
        case .sha384: 48
        case .sha512: 64
        }
    }

    /// Hashes `data` into the first ``length`` bytes of `output`.
    func hash(_ data: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws(NBDError) {
        let status = gnutls_hash_fast(digest, data.baseAddress, data.count, output)
        guard status == 0 else { throw Self.failure("hashing with \(rawValue)", status) }
    }

    /// PBKDF2 with HMAC over this hash: fills `output` from `password`, `salt` and `iterations`.
    ///
    /// Takes as long as the header's iteration count asks (cryptsetup and qemu calibrate it to a
    /// second or two), so callers run it off the cooperative pool.
    func pbkdf2(
        password: UnsafeRawBufferPointer, salt: UnsafeRawBufferPointer, iterations: UInt32,
        into output: UnsafeMutableRawBufferPointer
    ) throws(NBDError) {
        // GnuTLS reads through these pointers only; an empty password still needs a valid address.
        var placeholder: UInt8 = 0
        let status = withUnsafeMutablePointer(to: &placeholder) { fallback in
            var key = gnutls_datum_t(
                data: UnsafeMutablePointer(mutating: password.baseAddress?.assumingMemoryBound(to: UInt8.self))
                    ?? fallback,
                size: UInt32(password.count))
            var saltDatum = gnutls_datum_t(
                data: UnsafeMutablePointer(mutating: salt.baseAddress?.assumingMemoryBound(to: UInt8.self))
                    ?? fallback,
                size: UInt32(salt.count))
            return gnutls_pbkdf2(
                gnutls_mac_algorithm_t(rawValue: digest.rawValue), &key, &saltDatum, iterations,
                output.baseAddress, output.count)
        }
        guard status == 0 else { throw Self.failure("PBKDF2 with \(rawValue)", status) }
    }

    /// PBKDF2 of `password` with `salt` and `iterations`, `length` bytes long.
    func pbkdf2(password: [UInt8], salt: [UInt8], iterations: UInt32, length: Int) throws(NBDError) -> [UInt8] {
        let passwordBuffer = OwnedBytes(password)
        let saltBuffer = OwnedBytes(salt)
        let output = OwnedBytes(count: length)
        try pbkdf2(
            password: passwordBuffer.bytes, salt: saltBuffer.bytes, iterations: iterations, into: output.writable)
        return output.array
    }

    static func failure(_ what: String, _ status: Int32) -> NBDError {
        NBDError(.ioError, "luks: \(what) failed: \(String(cString: gnutls_strerror(status)))")
    }
}
