import CGnuTLS
import NBDCore

/// The data cipher a LUKS header names in `cipher-name` and `cipher-mode` (such as `aes` and
/// `xts-plain64`), checked against the key size and mapped to a GnuTLS cipher.
///
/// Supported, as in nbdkit: AES in XTS mode (128- and 256-bit keys, so a 32- or 64-byte LUKS key)
/// and in CBC mode (128, 192 and 256 bits), with the `plain` and `plain64` IV generators. Beyond
/// nbdkit: the `essiv:HASH` generator (cryptsetup's `aes-cbc-essiv:sha256`).
struct LUKSCipherSpec: Sendable, Hashable, CustomStringConvertible {
    /// How consecutive AES blocks of one sector are chained.
    enum Mode: String, Sendable, Hashable {
        case xts, cbc
    }

    /// How a sector's number becomes the cipher's initialization vector.
    enum IVGenerator: Sendable, Hashable {
        /// The low 32 bits of the sector number, little-endian, then zeros.
        case plain
        /// The 64-bit sector number, little-endian, then zeros.
        case plain64
        /// `plain64` encrypted with AES under the hash of the key (encrypted salt-sector IV).
        case essiv(LUKSHash)
    }

    let mode: Mode
    let ivGenerator: IVGenerator
    /// The key length in bytes (twice AES's for XTS).
    let keyBytes: Int

    /// The size of an initialization vector: one AES block.
    static let ivSize = 16

    /// Checks `name` (`cipher-name`), `modeText` (`cipher-mode`) and `keyBytes` (`key-bytes`).
    ///
    /// - Throws: `NBDError` (`EINVAL`) naming what is not supported.
    init(name: String, mode modeText: String, keyBytes: Int) throws(NBDError) {
        guard name.lowercased() == "aes" else {
            throw NBDError(
                .invalidArgument,
                "luks: the image uses the cipher '\(name)', which is not supported (only aes is, as in nbdkit)")
        }
        let parts = modeText.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let mode = Mode(rawValue: parts[0].lowercased()) else {
            throw NBDError(
                .invalidArgument,
                "luks: the image uses the cipher mode '\(modeText)', which is not supported (supported: xts-plain64, xts-plain, cbc-plain64, cbc-plain, cbc-essiv:HASH)"
            )
        }
        let generator = parts[1].lowercased()
        switch generator {
        case "plain": ivGenerator = .plain
        case "plain64": ivGenerator = .plain64
        default:
            guard generator.hasPrefix("essiv:"), let hash = LUKSHash(named: String(generator.dropFirst(6))),
                [16, 24, 32].contains(hash.length)
            else {
                throw NBDError(
                    .invalidArgument,
                    "luks: the image uses the IV generator '\(parts[1])', which is not supported (supported: plain, plain64, essiv with a hash of 16, 24 or 32 bytes such as essiv:sha256)"
                )
            }
            ivGenerator = .essiv(hash)
        }
        let sizes = mode == .xts ? [32, 64] : [16, 24, 32]
        guard sizes.contains(keyBytes) else {
            throw NBDError(
                .invalidArgument,
                "luks: the header is corrupt or unsupported: aes-\(mode.rawValue) needs a key of \(sizes.map(String.init).joined(separator: " or ")) bytes, but key-bytes is \(keyBytes)"
            )
        }
        self.mode = mode
        self.keyBytes = keyBytes
    }

    /// GnuTLS's identifier for the data cipher.
    var algorithm: gnutls_cipher_algorithm_t {
        switch (mode, keyBytes) {
        case (.xts, 32): GNUTLS_CIPHER_AES_128_XTS
        case (.xts, _): GNUTLS_CIPHER_AES_256_XTS
        case (.cbc, 16): GNUTLS_CIPHER_AES_128_CBC
        case (.cbc, 24): GNUTLS_CIPHER_AES_192_CBC
        case (.cbc, _): GNUTLS_CIPHER_AES_256_CBC
        }
    }

    /// The spelling cryptsetup uses, such as `aes-xts-plain64` (for messages and the description).
    var description: String {
        let generator =
            switch ivGenerator {
            case .plain: "plain"
            case .plain64: "plain64"
            case .essiv(let hash): "essiv:\(hash.rawValue)"
            }
        return "aes-\(mode.rawValue)-\(generator)"
    }
}
