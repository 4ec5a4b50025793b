#if canImport(Glibc)
    import Glibc
#endif
import NBDCore
import Synchronization

/// One open librbd image handle (`rbd_image_t`): an image context with its own writeback cache,
/// exclusive-lock state and object map. Every I/O goes through librbd's asynchronous API and
/// suspends until Ceph answers. librbd's image handles accept concurrent calls from any thread,
/// hence `@unchecked Sendable`.
final class RBDImage: @unchecked Sendable {
    let cluster: RBDCluster
    let spec: RBDImageSpec
    let isReadOnly: Bool
    private let handle: Librbd.Handle
    private let isClosed = Atomic<Bool>(false)
    private var library: Librbd { cluster.library }

    private init(cluster: RBDCluster, spec: RBDImageSpec, isReadOnly: Bool, handle: Librbd.Handle) {
        self.cluster = cluster
        self.spec = spec
        self.isReadOnly = isReadOnly
        self.handle = handle
    }

    deinit {
        // A handle that ``close()`` did not close (a provider dropped without shutdown).
        if !isClosed.load(ordering: .acquiring) { _ = library.close(handle) }
    }

    /// Opens the spec's image (its snapshot, read-only, when the spec names one) on a Dispatch
    /// thread: opening reads the header and may wait for the monitors and OSDs.
    ///
    /// - Throws: `NBDError` naming the image (or snapshot) and pool when they do not exist.
    static func open(_ cluster: RBDCluster, _ spec: RBDImageSpec, readOnly: Bool) async throws(NBDError) -> RBDImage {
        let readOnly = readOnly || spec.snapshot != nil
        let library = cluster.library
        let (status, opened) = await BlockingCall.run { () -> (Int32, SendableHandle) in
            var image: Librbd.Handle?
            // A snapshot is opened read-only: librbd refuses writes to one anyway, and a read-only
            // handle takes no exclusive lock away from the image's writers.
            let status =
                readOnly
                ? library.openReadOnly(cluster.ioContext, spec.image, &image, spec.snapshot)
                : library.open(cluster.ioContext, spec.image, &image, spec.snapshot)
            return (status, SendableHandle(handle: image))
        }
        guard status == 0, let handle = opened.handle else {
            if status == -ENOENT {
                let what =
                    spec.snapshot.map { "image '\(spec.image)' or its snapshot '\($0)'" } ?? "image '\(spec.image)'"
                throw NBDError(
                    .invalidArgument,
                    "rbd: \(what) not found in pool '\(cluster.poolDescription)' (list them with: rbd ls \(cluster.poolDescription); rbd snap ls \(spec.description.split(separator: "@")[0]))"
                )
            }
            throw NBDError(rbdResult: Int(status), "opening image \(spec)")
        }
        return RBDImage(cluster: cluster, spec: spec, isReadOnly: readOnly, handle: handle)
    }

    /// The image's size in bytes.
    func size() throws(NBDError) -> UInt64 {
        var size: UInt64 = 0
        let status = library.getSize(handle, &size)
        guard status == 0 else { throw NBDError(rbdResult: Int(status), "reading the size of \(spec)") }
        return size
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws(NBDError) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        let handle = self.handle
        let result = await RBDCompletion.run(library) { library.aioRead(handle, offset, buffer.count, base, $0) }
        guard result >= 0 else { throw NBDError(rbdResult: result, "read of \(buffer.count) bytes at \(offset) from \(spec)") }
        // librbd reads past the end of a short image as zeroes; a short count would be a bug.
        if result < buffer.count { (buffer.baseAddress! + result).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - result) }
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) async throws(NBDError) {
        guard let base = data.baseAddress, data.count > 0 else { return }
        let handle = self.handle
        let result = await RBDCompletion.run(library) { library.aioWrite(handle, offset, data.count, base, $0) }
        guard result >= 0 else { throw NBDError(rbdResult: result, "write of \(data.count) bytes at \(offset) to \(spec)") }
    }

    /// Whether librbd has `rbd_aio_write_zeroes` (Ceph 16 and later).
    var canWriteZeroes: Bool { library.aioWriteZeroes != nil }

    /// Zeroes the range; with `allocate`, by writing (never deallocating, the NBD `NO_HOLE` flag).
    func writeZeroes(count: UInt64, at offset: UInt64, allocate: Bool) async throws(NBDError) {
        guard let writeZeroes = library.aioWriteZeroes else {
            throw NBDError(.notSupported, "rbd: this librbd has no write_zeroes")
        }
        let handle = self.handle
        let flags = allocate ? Librbd.writeZeroesThickProvision : 0
        let result = await RBDCompletion.run(library) { writeZeroes(handle, offset, Int(count), $0, flags, 0) }
        guard result >= 0 else { throw NBDError(rbdResult: result, "zeroing \(count) bytes at \(offset) of \(spec)") }
    }

    func discard(count: UInt64, at offset: UInt64) async throws(NBDError) {
        let handle = self.handle
        let result = await RBDCompletion.run(library) { library.aioDiscard(handle, offset, count, $0) }
        guard result >= 0 else { throw NBDError(rbdResult: result, "discard of \(count) bytes at \(offset) of \(spec)") }
    }

    /// Writes librbd's cache back and waits until the OSDs acknowledged every write completed before.
    func flush() async throws(NBDError) {
        let handle = self.handle
        let result = await RBDCompletion.run(library) { library.aioFlush(handle, $0) }
        guard result >= 0 else { throw NBDError(rbdResult: result, "flush of \(spec)") }
    }

    /// Closes the handle (writing its cache back and releasing the exclusive lock) on a Dispatch
    /// thread. Later calls do nothing.
    func close() async {
        guard !isClosed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let library = self.library
        let handle = SendableHandle(handle: self.handle)
        _ = await BlockingCall.run { library.close(handle.handle!) }
    }
}
