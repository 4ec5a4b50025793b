import Foundation
import XCTest

/// A throw-away single-node Ceph cluster (`Scripts/ceph-test-cluster.sh`: one monitor, one
/// memstore OSD, no authentication, 127.0.0.1 only, pool `rbd`) shared by every test of this test
/// process: started by the first test that asks for it, stopped when the test bundle finishes.
///
/// Without Ceph installed a test that asks for it is skipped with the Debian packages to install,
/// unless `NBD_INTEROP=required` (as in CI), where it fails. If the test process dies before it can
/// stop the cluster, the script's watcher stops it (the script is told this process's PID), and the
/// daemons stay in this process's process group, which CI kills after each stage.
public final class CephTestCluster: Sendable {
    /// The Debian packages the cluster and the tests' `rbd` commands need.
    public static let packages = "ceph-mon ceph-osd ceph-common librbd1"

    /// The cluster's directory (ceph.conf, data, logs).
    public let directory: String
    /// The cluster's ceph.conf, for `conf=`.
    public let confPath: String

    private init(directory: String, confPath: String) {
        self.directory = directory
        self.confPath = confPath
    }

    /// The cluster, started now if no test started it yet.
    ///
    /// - Throws: `XCTSkip` when Ceph is not installed (a failure when `NBD_INTEROP=required`), or an
    ///   error with the script's output when the cluster does not start.
    public static func shared(file: StaticString = #filePath, line: UInt = #line) throws -> CephTestCluster {
        try requireCeph(file: file, line: line)
        return try state.withLock { state -> CephTestCluster in
            if let cluster = state.cluster { return cluster }
            if let failure = state.startFailure { throw StartError(message: failure) }
            do {
                let cluster = try start()
                state.cluster = cluster
                XCTestObservationCenter.shared.addTestObserver(StopAtEnd())
                return cluster
            } catch let error as StartError {
                state.startFailure = error.message
                throw error
            }
        }
    }

    /// A cluster of the calling test's own, for a test that breaks it (stops its OSD). The caller
    /// stops it with ``stop()``; the script's watcher stops it if this process dies first.
    ///
    /// - Parameter objectstore: `memstore` (objects in memory, lost when the OSD restarts) or
    ///   `bluestore` (objects in a sparse file in the cluster's directory, kept across an OSD
    ///   restart, for tests that restart it; slower to start).
    public static func startPrivate(
        objectstore: String = "memstore", file: StaticString = #filePath, line: UInt = #line
    ) throws -> CephTestCluster {
        try requireCeph(file: file, line: line)
        return try start(objectstore: objectstore)
    }

    /// Stops this cluster (not the shared one) and removes its directory.
    public func stop() {
        _ = try? Self.run(Self.scriptPath, ["stop", directory], limit: 60)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Skips (or fails, when required) unless the Ceph daemons, tools and librbd are installed.
    public static func requireCeph(file: StaticString = #filePath, line: UInt = #line) throws {
        let tools = ["ceph-mon", "ceph-osd", "ceph", "rbd", "rados", "monmaptool"]
        let missing = tools.filter { tool in
            !["/usr/bin", "/usr/local/bin", "/bin"].contains {
                FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)")
            }
        }
        let hasLibrbd = dlopen("librbd.so.1", RTLD_LAZY) != nil
        guard !missing.isEmpty || !hasLibrbd else { return }
        let what = (missing + (hasLibrbd ? [] : ["librbd.so.1"])).joined(separator: ", ")
        let message =
            "Ceph is not installed (\(what) missing; Debian packages \(packages)); run .ci/run or apt-get install them"
        if ProcessInfo.processInfo.environment["NBD_INTEROP"] == "required" {
            XCTFail("NBD_INTEROP=required but \(message)", file: file, line: line)
            throw XCTSkip("failed: \(message)")
        }
        throw XCTSkip(message)
    }

    /// Creates an image of `size` bytes with a name no other test uses and returns the name
    /// (in pool `rbd`). `features` replaces the default ones (such as `["layering"]`: no exclusive lock).
    public func createImage(size: Int, prefix: String = "test", features: [String]? = nil) throws -> String {
        let name = "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
        let featureArguments = features.map { ["--image-feature", $0.joined(separator: ",")] } ?? []
        try rbd(["create", "--size", "\(size)B"] + featureArguments + ["rbd/\(name)"])
        return name
    }

    /// Runs the `rbd` tool against this cluster and returns its standard output.
    @discardableResult
    public func rbd(_ arguments: [String]) throws -> String {
        let result = try Self.run("/usr/bin/rbd", ["-c", confPath, "--no-progress"] + arguments, limit: 120)
        guard result.status == 0 else {
            throw StartError(
                message: "rbd \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.output)")
        }
        return result.output
    }

    /// Writes `bytes` as the whole content of image `name` (which `rbd import` creates).
    public func importImage(_ name: String, _ bytes: [UInt8]) throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rbd-import-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(bytes).write(to: file)
        try rbd(["import", file.path, "rbd/\(name)"])
    }

    /// The whole content of image `name` (or `name@snapshot`), read by `rbd export`, not through
    /// the code under test.
    public func exportImage(_ name: String) throws -> [UInt8] {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("rbd-export-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try rbd(["export", "rbd/\(name)", file.path])
        return [UInt8](try Data(contentsOf: file))
    }

    /// Runs the cluster script with `command` (`stop-osd`, `start-osd`).
    public func script(_ command: String) throws {
        let result = try Self.run(Self.scriptPath, [command, directory], limit: 120)
        guard result.status == 0 else {
            throw StartError(message: "ceph-test-cluster.sh \(command) failed (\(result.status)): \(result.output)")
        }
    }

    private struct State {
        var cluster: CephTestCluster?
        var startFailure: String?
    }

    private static let state = NSLockedState(State())

    /// Why the cluster or an `rbd` command failed, with the output to look at.
    public struct StartError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// `Scripts/ceph-test-cluster.sh`, for tests that run it from a child process (`kill-osd`).
    public static var scriptPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Scripts/ceph-test-cluster.sh").path
    }

    private static func start(objectstore: String = "memstore") throws -> CephTestCluster {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "nbd-ceph-\(UUID().uuidString.prefix(8))"
        ).path
        let result = try run(
            scriptPath, ["start", directory], limit: 180,
            environment: [
                "CEPH_CLUSTER_OWNER": "\(getpid())", "CEPH_OBJECTSTORE": objectstore, "CEPH_MEMSTORE_BYTES": "1G",
                "CEPH_BLUESTORE_BYTES": "2G",
            ])
        guard result.status == 0 else {
            _ = try? run(scriptPath, ["stop", directory], limit: 60)
            throw StartError(message: "the test Ceph cluster did not start (\(result.status)): \(result.output)")
        }
        return CephTestCluster(directory: directory, confPath: directory + "/ceph.conf")
    }

    /// Stops the cluster when the test bundle finishes, passing or failing.
    private final class StopAtEnd: NSObject, XCTestObservation {
        func testBundleDidFinish(_ testBundle: Bundle) {
            CephTestCluster.stopShared()
        }
    }

    /// Stops the shared cluster, if one was started, and removes its directory.
    public static func stopShared() {
        state.withLock { state in
            guard let cluster = state.cluster else { return }
            state.cluster = nil
            cluster.stop()
        }
    }

    /// Runs a program with output to a file; a watchdog ends it after `limit` seconds.
    private static func run(
        _ executable: String, _ arguments: [String], limit: Double, environment extra: [String: String] = [:]
    ) throws -> (status: Int32, output: String) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("ceph-run-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: output) }
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = "/usr/bin:/usr/sbin:/bin:/sbin:" + (environment["PATH"] ?? "")
        environment.merge(extra) { $1 }
        process.environment = environment
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + limit, execute: watchdog)
        process.waitUntilExit()
        watchdog.cancel()
        try? handle.close()
        return (process.terminationStatus, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }
}

/// A value behind an `NSLock` (the fixture runs on XCTest's thread and the observer's).
private final class NSLockedState<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
