import Foundation
import NBDCeph
import NBDCore
import NBDTestSupport
import XCTest

/// The `rbd` backend against a real single-node cluster (``CephTestCluster``): what it writes is
/// what `rbd export` reads and the reverse, trim and zero, snapshots, capabilities, and the errors
/// for what is missing or unreachable.
final class RBDProviderTests: XCTestCase {
    private var cluster: CephTestCluster!

    override func setUpWithError() throws {
        cluster = try CephTestCluster.shared()
    }

    private func provider(
        _ image: String, handles: RBDHandleMode = .shared, cache: Bool = true, readOnly: Bool = false
    ) async throws -> RBDProvider {
        try await withBoundedWait("opening rbd/\(image)") { [cluster] in
            try await RBDProvider(
                spec: RBDImageSpec(pool: "rbd", image: image),
                configuration: RBDClientConfiguration(confPath: cluster!.confPath, cache: cache),
                handles: handles, isReadOnly: readOnly)
        }
    }

    /// Reproducible bytes, different for each seed.
    private func pattern(_ count: Int, seed: UInt64) -> [UInt8] { Self.pattern(count, seed: seed) }

    private static func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
        // Eight bytes per step: the sanitizer builds run this over megabytes.
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var words = [UInt64](repeating: 0, count: (count + 7) / 8)
        for index in words.indices {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            words[index] = state ^ (state >> 29)
        }
        return words.withUnsafeBytes { Array($0.prefix(count)) }
    }

    func testWritesThroughTheBackendAreWhatLibrbdReadsDirectly() async throws {
        let image = try cluster.createImage(size: 8 << 20)
        let provider = try await provider(image, handles: .perConnection)
        let backend = try await provider.open(ConnectionInfo())
        XCTAssertEqual(backend.capabilities.size, 8 << 20)
        let first = pattern(1 << 20, seed: 1)
        let second = pattern(4096, seed: 2)
        try await backend.writeBytes(first, at: 0)
        // Straddles the boundary between the first two 4 MiB objects.
        try await backend.writeBytes(second, at: (4 << 20) - 1000, flags: .fua)
        try await backend.flush(flags: [])
        await backend.close()
        await provider.shutdown()

        let stored = try cluster.exportImage(image)
        XCTAssertEqual(stored.count, 8 << 20)
        XCTAssertEqual(Array(stored[0..<(1 << 20)]), first)
        XCTAssertEqual(Array(stored[((4 << 20) - 1000)..<((4 << 20) + 3096)]), second)
        XCTAssertEqual(stored[(1 << 20)..<(2 << 20)].allSatisfy { $0 == 0 }, true)
    }

    /// Shutting the export down disconnects from the cluster, so librados' threads end before the
    /// process does: left running through `exit`, they crashed nbd-serve under ThreadSanitizer (5
    /// of 8 runs of the 4-connection fio test ended with SIGSEGV after fio had verified every block).
    /// A connection opened afterwards is refused instead of using the closed cluster.
    func testShutdownDisconnectsFromTheClusterAndLaterOpensAreRefused() async throws {
        let image = try cluster.createImage(size: 1 << 20)
        for handles in [RBDHandleMode.shared, .perConnection] {
            let provider = try await provider(image, handles: handles)
            let backend = try await provider.open(ConnectionInfo())
            try await backend.writeBytes(pattern(4096, seed: 7), at: 0)
            await backend.close()
            XCTAssertFalse(provider.isDisconnected, "\(handles)")
            await provider.shutdown()
            XCTAssertTrue(provider.isDisconnected, "\(handles): librados is shut down")
            await XCTAssertThrowsNBDError(
                { () async throws(NBDError) in _ = try await provider.open(ConnectionInfo()) }, code: .shutdown)
        }
        XCTAssertEqual(Array(try cluster.exportImage(image).prefix(4096)), pattern(4096, seed: 7))
    }

    func testReadsThroughTheBackendSeeWhatLibrbdWroteDirectly() async throws {
        let image = "imported-\(UUID().uuidString.prefix(8).lowercased())"
        let content = pattern(6 << 20, seed: 3)
        try cluster.importImage(image, content)
        let provider = try await provider(image)
        let backend = try await provider.open(ConnectionInfo())
        XCTAssertEqual(backend.capabilities.size, 6 << 20)
        let whole = try await backend.readBytes(6 << 20, at: 0)
        XCTAssertTrue(whole == content, "the image read through the backend differs from what rbd import wrote")
        let middle = try await backend.readBytes(12345, at: (4 << 20) - 6000)
        XCTAssertEqual(middle, Array(content[((4 << 20) - 6000)..<((4 << 20) + 6345)]))
        await backend.close()
        await provider.shutdown()
    }

    func testManyRequestsInFlightAtOnceEachGetTheirOwnData() async throws {
        let image = try cluster.createImage(size: 4 << 20)
        let provider = try await provider(image)
        let backend = try await provider.open(ConnectionInfo())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for block in 0..<64 {
                group.addTask {
                    try await backend.writeBytes(Self.pattern(16384, seed: UInt64(block)), at: UInt64(block) * 16384)
                }
            }
            try await group.waitForAll()
        }
        try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            for block in 0..<64 {
                group.addTask { (block, try await backend.readBytes(16384, at: UInt64(block) * 16384)) }
            }
            for try await (block, bytes) in group {
                XCTAssertEqual(bytes, pattern(16384, seed: UInt64(block)), "block \(block)")
            }
        }
        await backend.close()
        await provider.shutdown()
    }

    func testZeroAndTrimReadBackAsZeroesDirectly() async throws {
        let image = "zero-\(UUID().uuidString.prefix(8).lowercased())"
        try cluster.importImage(image, pattern(8 << 20, seed: 4))
        let provider = try await provider(image)
        let backend = try await provider.open(ConnectionInfo())
        XCTAssertTrue(backend.capabilities.canZero)
        XCTAssertTrue(backend.capabilities.canTrim)
        // A partial object, allocated (NO_HOLE), and a whole object that librbd may deallocate.
        try await backend.zero(count: 100_000, at: 5000, flags: .noHole)
        try await backend.zero(count: 4 << 20, at: 4 << 20, flags: [])
        try await backend.flush(flags: [])
        let zeroes = try await backend.readBytes(100_000, at: 5000)
        XCTAssertTrue(zeroes.allSatisfy { $0 == 0 })
        // Trim of a whole object: librbd removes it, so it reads as zeroes (trim itself promises nothing).
        try await backend.trim(count: 4 << 20, at: 0, flags: .fua)
        await backend.close()
        await provider.shutdown()

        let stored = try cluster.exportImage(image)
        XCTAssertTrue(stored[(4 << 20)...].allSatisfy { $0 == 0 }, "zeroed object is not zero")
        XCTAssertTrue(stored[0..<(4 << 20)].allSatisfy { $0 == 0 }, "trimmed object is not zero")
    }

    /// Block status from the object map: whole 4 MiB objects, data where an object exists. A write
    /// not yet flushed is reported as data too (the backend flushes before it asks).
    func testBlockStatusReportsWrittenObjectsAsDataAndTheRestAsHoles() async throws {
        let image = try cluster.createImage(size: 16 << 20)
        let provider = try await provider(image)
        let backend = try await provider.open(ConnectionInfo())
        XCTAssertTrue(backend.capabilities.canExtents)
        let empty = try await backend.extents(count: 16 << 20, at: 0, flags: [])
        XCTAssertEqual(empty, [.hole(16 << 20)])
        try await backend.writeBytes(pattern(4096, seed: 7), at: (4 << 20) + 100)
        try await backend.writeBytes(pattern(10, seed: 8), at: (12 << 20) + 5)
        let map = try await backend.extents(count: 16 << 20, at: 0, flags: [])
        XCTAssertEqual(map, [.hole(4 << 20), .data(4 << 20), .hole(4 << 20), .data(4 << 20)])
        let inside = try await backend.extents(count: 1 << 20, at: (4 << 20) + 4096, flags: [])
        XCTAssertEqual(inside, [.data(1 << 20)])
        let across = try await backend.extents(count: 2 << 20, at: 7 << 20, flags: [])
        XCTAssertEqual(across, [.data(1 << 20), .hole(1 << 20)])
        await backend.close()
        await provider.shutdown()
    }

    func testWithoutFastDiffNoBlockStatusIsOffered() async throws {
        let image = try cluster.createImage(size: 1 << 20, features: ["layering"])
        let provider = try await provider(image)
        let backend = try await provider.open(ConnectionInfo())
        XCTAssertFalse(backend.capabilities.canExtents)
        await backend.close()
        await provider.shutdown()
    }

    func testASnapshotIsServedReadOnlyAndLibrbdRefusesWritesWithEPERM() async throws {
        let image = "snap-\(UUID().uuidString.prefix(8).lowercased())"
        let before = pattern(1 << 20, seed: 5)
        try cluster.importImage(image, before)
        try cluster.rbd(["snap", "create", "rbd/\(image)@before"])
        let provider = try await withBoundedWait("opening the snapshot") { [cluster] in
            try await RBDProvider(
                spec: try RBDImageSpec("rbd/\(image)@before"),
                configuration: RBDClientConfiguration(confPath: cluster!.confPath))
        }
        XCTAssertTrue(provider.isReadOnly)
        let backend = try await provider.open(ConnectionInfo())
        XCTAssertFalse(backend.capabilities.isWritable)
        XCTAssertFalse(backend.capabilities.canTrim)
        XCTAssertFalse(backend.capabilities.canZero)
        // The server would refuse this before it reaches the backend; librbd refuses it too.
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.writeBytes([1, 2, 3], at: 0) }, code: .notPermitted)
        let read = try await backend.readBytes(1 << 20, at: 0)
        XCTAssertEqual(read, before)
        await backend.close()
        await provider.shutdown()
    }

    func testReadOnlyConnectionsGetReadOnlyCapabilities() async throws {
        let image = try cluster.createImage(size: 1 << 20)
        let provider = try await provider(image, handles: .perConnection)
        let backend = try await provider.open(ConnectionInfo(isReadOnly: true))
        XCTAssertFalse(backend.capabilities.isWritable)
        await XCTAssertThrowsNBDError(
            { () throws(NBDError) in try await backend.writeBytes([1], at: 0) }, code: .notPermitted)
        await backend.close()
        await provider.shutdown()
    }

    func testMultiConnIsAdvertisedOnlyWhenEveryConnectionSeesEveryFlush() async throws {
        let image = try cluster.createImage(size: 1 << 20)
        for (handles, cache, expected) in [
            (RBDHandleMode.shared, true, true), (.shared, false, true), (.perConnection, false, true),
            (.perConnection, true, false),
        ] {
            let provider = try await provider(image, handles: handles, cache: cache)
            let backend = try await provider.open(ConnectionInfo())
            XCTAssertEqual(backend.capabilities.canMultiConn, expected, "handles=\(handles) cache=\(cache)")
            XCTAssertEqual(backend.capabilities.suspendingOperations, .all)
            await backend.close()
            await provider.shutdown()
        }
    }

    func testAMissingImageIsRefusedAtStartNamingIt() async throws {
        let error = try await startError(["image": "rbd/no-such-image", "conf": cluster.confPath])
        XCTAssertEqual(error.code, .invalidArgument)
        XCTAssertTrue(error.message.contains("image 'no-such-image' not found in pool 'rbd'"), error.message)
    }

    func testAMissingSnapshotIsRefusedAtStartNamingIt() async throws {
        let image = try cluster.createImage(size: 1 << 20)
        let error = try await startError(["image": "\(image)@nope", "conf": cluster.confPath])
        XCTAssertTrue(error.message.contains("snapshot 'nope' not found"), error.message)
    }

    func testAMissingPoolIsRefusedAtStartNamingIt() async throws {
        let error = try await startError(["image": "no-such-pool/disk", "conf": cluster.confPath])
        XCTAssertEqual(error.code, .invalidArgument)
        XCTAssertTrue(error.message.contains("pool 'no-such-pool' not found"), error.message)
    }

    func testAMissingConfIsRefusedNamingIt() async throws {
        let error = try await startError(["image": "disk", "conf": "/nonexistent/ceph.conf"])
        XCTAssertEqual(error.code, .invalidArgument)
        XCTAssertTrue(error.message.contains("conf=/nonexistent/ceph.conf"), error.message)
    }

    /// A monitor address where nothing listens: the start fails within `timeout=` (the bounded wait
    /// fails the test if it hangs instead).
    func testUnreachableMonitorsFailWithinTheTimeoutNamingThem() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rbd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let conf = directory.appendingPathComponent("ceph.conf")
        // Port 9 (discard) on loopback: nothing listens there in a test environment.
        try """
        [global]
        mon host = [v2:127.0.0.1:9]
        auth cluster required = none
        auth service required = none
        auth client required = none
        log file = \(directory.path)/client.log

        """.write(to: conf, atomically: true, encoding: .utf8)
        let error = try await startError(["image": "disk", "conf": conf.path, "timeout": "2"])
        XCTAssertEqual(error.code, .ioError)
        XCTAssertTrue(error.message.contains("cannot connect to the Ceph monitors"), error.message)
        XCTAssertTrue(error.message.contains("127.0.0.1:9"), error.message)
    }

    /// The OSD stops: each request fails with `EIO` once `timeout=` passes (librados'
    /// `rados_osd_op_timeout`), a FUA write is not acknowledged, and the backend keeps answering.
    /// A cluster of its own, since the OSD does not come back.
    func testAStoppedOSDFailsRequestsWithEIOWithinTheOpTimeout() async throws {
        let faulty = try CephTestCluster.startPrivate()
        defer { faulty.stop() }
        // In a function of its own, so that the provider (and its librados client) is gone before
        // the cluster: a client whose monitor vanished takes seconds to shut down.
        try await checkRequestsFailWithEIO(on: faulty)
    }

    private func checkRequestsFailWithEIO(on faulty: CephTestCluster) async throws {
        let image = try faulty.createImage(size: 8 << 20)
        let provider = try await withBoundedWait("opening the image") {
            try await RBDProvider(
                spec: RBDImageSpec(image: image),
                configuration: RBDClientConfiguration(confPath: faulty.confPath, timeout: .seconds(1)))
        }
        let backend = try await provider.open(ConnectionInfo())
        try await backend.writeBytes(pattern(4096, seed: 6), at: 0, flags: .fua)
        try faulty.script("kill-osd")
        try await withBoundedWait("requests to a stopped OSD") {
            let read = await XCTAssertThrowsNBDError(
                { () throws(NBDError) in _ = try await backend.readBytes(4096, at: 0) }, code: .ioError)
            XCTAssertTrue(
                read?.message.contains("read of 4096 bytes at 0 from rbd/\(image)") ?? false,
                "\(String(describing: read))")
            await XCTAssertThrowsNBDError(
                { () throws(NBDError) in try await backend.writeBytes([1, 2, 3], at: 8192, flags: .fua) },
                code: .ioError)
            await XCTAssertThrowsNBDError(
                { () throws(NBDError) in _ = try await backend.readBytes(512, at: 1 << 20) }, code: .ioError)
        }
        await backend.close()
        await provider.shutdown()
    }

    func testBadParametersAreRefusedNamingTheParameter() async throws {
        for (parameters, expected) in [
            (["image": "a/b/c/d"], "image=a/b/c/d"),
            (["image": "disk", "handles": "some"], "handles=some: expected one of shared, per-connection"),
            (["image": "disk", "cache": "maybe"], "cache=maybe"),
            (["image": "disk", "timeout": "0"], "timeout=0"),
            (["image": "disk", "timeout": "soon"], "timeout=soon"),
            (["image": "disk", "user": "client.admin"], "user=client.admin"),
            (["image": "disk", "conf": ""], "conf="),
            (
                ["image": "disk", "keyring": "/nonexistent/keyring", "conf": cluster.confPath],
                "keyring=/nonexistent/keyring"
            ),
        ] {
            let error = try await startError(parameters)
            XCTAssertEqual(error.code, .invalidArgument, "\(parameters)")
            XCTAssertTrue(error.message.contains(expected), "\(parameters): \(error.message)")
        }
    }

    /// The error `RBDProvider(parameters:)` throws for `parameters`, within a bounded time.
    private func startError(_ parameters: [String: String]) async throws -> NBDError {
        var values = ParameterValues()
        for (key, value) in parameters.sorted(by: { $0.key < $1.key }) { values.append(key, value) }
        let result = try await withBoundedWait("the rbd backend's start with \(parameters)") { [values] in
            do throws(NBDError) {
                _ = try await RBDProvider(parameters: values, options: BackendOptions())
                return NBDError?.none
            } catch {
                return error
            }
        }
        return try XCTUnwrap(result, "\(parameters) started")
    }
}
