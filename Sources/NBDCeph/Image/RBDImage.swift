import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One run that `rbd_diff_iterate2` reported.
struct AllocatedRun: Sendable, Hashable {
    var offset: UInt64
    var length: UInt64
    var exists: Bool
}

/// Collects `rbd_diff_iterate2`'s runs; used by the one thread that runs the diff.
private final class AllocatedRunCollector {
    var runs: [AllocatedRun] = []
}

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
    /// The error for `result` from `what`; after a timeout, also asks librados for the newest OSD
    /// map (``RBDCluster/refreshOSDMap()``).
    private func failure(_ result: Int, _ what: String) -> NBDError {
        if result == -Int(ETIMEDOUT) { cluster.refreshOSDMap() }
        return NBDError(rbdResult: result, what)
    }

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
        guard result >= 0 else {
            throw failure(result, "read of \(buffer.count) bytes at \(offset) from \(spec)")
        }
        // librbd answers with the bytes it read; any it did not (an image shrunk meanwhile) read as zeroes.
        if result < buffer.count {
            (buffer.baseAddress! + result).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - result)
        }
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) async throws(NBDError) {
        guard let base = data.baseAddress, data.count > 0 else { return }
        let handle = self.handle
        let result = await RBDCompletion.run(library) { library.aioWrite(handle, offset, data.count, base, $0) }
        guard result >= 0 else {
            throw failure(result, "write of \(data.count) bytes at \(offset) to \(spec)")
        }
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
        guard result >= 0 else { throw failure(result, "zeroing \(count) bytes at \(offset) of \(spec)") }
    }

    func discard(count: UInt64, at offset: UInt64) async throws(NBDError) {
        let handle = self.handle
        let result = await RBDCompletion.run(library) { library.aioDiscard(handle, offset, count, $0) }
        guard result >= 0 else {
            throw failure(result, "discard of \(count) bytes at \(offset) of \(spec)")
        }
    }

    /// Writes librbd's cache back and waits until the OSDs acknowledged every write completed before.
    func flush() async throws(NBDError) {
        let handle = self.handle
        let result = await RBDCompletion.run(library) { library.aioFlush(handle, $0) }
        guard result >= 0 else { throw failure(result, "flush of \(spec)") }
    }

    /// Whether ``allocation(count:at:)`` is cheap: the image has fast-diff, its object map is
    /// valid, and librbd has `rbd_diff_iterate2`. Without fast-diff a diff lists the image's objects
    /// on the OSDs, far too slow to answer a block-status request with.
    var hasFastDiff: Bool {
        guard library.diffIterate2 != nil else { return false }
        var features: UInt64 = 0
        var flags: UInt64 = 0
        guard library.getFeatures(handle, &features) == 0, library.getFlags(handle, &flags) == 0 else { return false }
        return features & Librbd.featureFastDiff != 0 && flags & Librbd.flagsMapInvalid == 0
    }

    /// The allocation of `count` bytes at `offset`, object by object, from the object map
    /// (`rbd_diff_iterate2` from the image's creation, whole objects): objects that exist are data,
    /// the rest holes that read as zeroes.
    ///
    /// Flushes first: librbd may have acknowledged a write that the object map does not show yet,
    /// and a client that skips holes (nbdcopy, qemu-img convert) would copy zeroes in its place.
    /// `rbd_diff_iterate2` blocks, so it runs on a Dispatch thread.
    func allocation(count: UInt64, at offset: UInt64) async throws(NBDError) -> [Extent] {
        guard let diffIterate2 = library.diffIterate2 else { return [.data(count)] }
        try await flush()
        let handle = SendableHandle(handle: self.handle)
        let (status, runs) = await BlockingCall.run { () -> (Int32, [AllocatedRun]) in
            let collector = AllocatedRunCollector()
            let status = diffIterate2(
                handle.handle!, nil, offset, count, 1, 1,
                { runOffset, runLength, exists, argument in
                    let collector = Unmanaged<AllocatedRunCollector>.fromOpaque(argument!).takeUnretainedValue()
                    collector.runs.append(
                        AllocatedRun(offset: runOffset, length: UInt64(runLength), exists: exists != 0))
                    return 0
                }, Unmanaged.passUnretained(collector).toOpaque())
            return withExtendedLifetime(collector) { (status, collector.runs) }
        }
        guard status >= 0 else {
            throw failure(Int(status), "block status of \(count) bytes at \(offset) of \(spec)")
        }
        return Self.extents(runs, count: count, at: offset)
    }

    /// The extents covering `count` bytes at `offset`, from the runs the diff reported (in offset
    /// order, whole objects that may reach outside the range): gaps are holes, adjacent extents of
    /// the same kind merged.
    static func extents(_ runs: [AllocatedRun], count: UInt64, at offset: UInt64) -> [Extent] {
        let end = offset + count
        var extents: [Extent] = []
        var cursor = offset
        func append(_ length: UInt64, data: Bool) {
            guard length > 0 else { return }
            let extent: Extent = data ? .data(length) : .hole(length)
            if let last = extents.last, last.flags == extent.flags {
                extents[extents.count - 1].length += length
            } else {
                extents.append(extent)
            }
        }
        for run in runs.sorted(by: { $0.offset < $1.offset }) {
            let start = max(run.offset, cursor)
            let stop = min(run.offset + run.length, end)
            guard start < stop else { continue }
            append(start - cursor, data: false)
            append(stop - start, data: run.exists)
            cursor = stop
        }
        append(end - cursor, data: false)
        return extents
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
