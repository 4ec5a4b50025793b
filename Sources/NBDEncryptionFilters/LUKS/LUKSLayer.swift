import NBDCore
import NBDFlowFilters
import Synchronization

/// nbdkit's luks filter as a run-time `FilterLayer`:
/// `nbd-serve --filter=luks file disk.luks passphrase=+/run/secret`.
///
/// Serves the decrypted contents of a LUKSv1 image below (made by `cryptsetup luksFormat --type
/// luks1` or `qemu-img create -f luks`), reads and writes, encrypting with the image's master key.
/// Each connection reads and checks the header when it opens; a wrong passphrase, an image that is
/// not LUKSv1, a truncated or corrupt header refuse the connection with a message that says which.
///
/// Unlocking takes the second or two of PBKDF2 the image's creator calibrated. nbdkit pays it on
/// every connection; this layer unlocks once and keeps the result for every later connection whose
/// header is byte for byte the same (a changed header, such as a new key slot, is unlocked again).
public struct LUKSLayer: FilterLayer {
    public var name: String { Self.filterName }
    private let passphrase: [UInt8]
    private let unlocked = UnlockedVolumes()
    private let partialSectorLock = AsyncLock()

    /// Creates the layer with the passphrase itself (the `passphrase=` forms `-`, `+FILE` and `-FD`
    /// are resolved by ``init(parameters:)``).
    public init(passphrase: String) {
        self.passphrase = Array(passphrase.utf8)
    }

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        let volume = try await open(next)
        return AnyBlockBackend(LUKSFilter(wrapping: next, volume: volume, partialSectorLock: partialSectorLock))
    }

    /// The unlocked volume of the image `next` serves.
    func open(_ next: some BlockBackend) async throws(NBDError) -> LUKSVolume {
        let imageSize = next.capabilities.size
        let buffer = OwnedBytes(count: Int(min(UInt64(LUKSHeader.size), imageSize)))
        try await next.read(into: buffer.writable, at: 0, flags: [])
        let header = try LUKSHeader(buffer.bytes, imageSize: imageSize)
        let headerBytes = buffer.array
        if let volume = unlocked.volumes.withLock({ $0[headerBytes] }) { return volume }
        let volume = try await LUKSVolume.unlock(header, passphrase: passphrase, below: next)
        unlocked.volumes.withLock { $0[headerBytes] = volume }
        return volume
    }
}

extension LUKSLayer: ConfigurableFilterLayer {
    public static var filterName: String { "luks" }
    public static var summary: String {
        "serve the decrypted contents of a LUKSv1 image below, read and written (GnuTLS)"
    }
    public static var parameters: [ParameterDescription] {
        [
            ParameterDescription(
                "passphrase",
                "the passphrase of one of the image's key slots; -: ask on the terminal, +FILE: read from FILE, -FD: read from descriptor FD",
                required: true)
        ]
    }

    /// Creates the layer from `passphrase` (required), asking for it or reading it now when it is
    /// given as `-`, `+FILE` or `-FD`.
    public init(parameters: ParameterValues) throws(NBDError) {
        let text = try parameters.required("passphrase", example: "+/run/secret")
        self.init(passphrase: try SecretParameter.resolve(text, for: "passphrase"))
    }
}

/// The volumes a layer has unlocked, by the exact bytes of their header: the same header means the
/// same master-key digest, so the same key.
final class UnlockedVolumes: Sendable {
    let volumes = LockedValue<[[UInt8]: LUKSVolume]>([:])
}
