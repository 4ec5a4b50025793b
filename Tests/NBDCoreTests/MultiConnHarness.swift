import NBDBackends
import NBDCore
import NBDTestSupport
import XCTest

/// Builds the stacks of the upstream multi-conn tests in process: the connection-cache backend
/// ("Initial contents" padded to 32 bytes, as nbdkit's test plugin) under a list of filter layers.
struct MultiConnHarness {
    static let initialText = "Initial contents".padding(toLength: 32, withPad: " ", startingAt: 0)

    let provider: ConnectionCacheProvider
    let stack: FilterStack<ConnectionCacheProvider>
    let log: OperationLog
    var handles: [AnyBlockBackend] = []

    /// `layers` are outermost first, as with nbdkit's `--filter` options.
    init(layers: [any FilterLayer], strictFUA: Bool = false, log: OperationLog = OperationLog()) throws {
        provider = try ConnectionCacheProvider(size: 32, initialText: Self.initialText, strictFUA: strictFUA)
        stack = FilterStack(layers, over: provider)
        self.log = log
    }

    /// Opens `count` connections in order, as the upstream preamble does.
    mutating func connect(_ count: Int, exportName: String = "") async throws {
        for _ in 0..<count {
            handles.append(try await stack.open(ConnectionInfo(exportName: exportName)))
        }
    }

    subscript(index: Int) -> AnyBlockBackend { handles[index] }

    func closeAll() async {
        for handle in handles { await handle.close() }
    }
}

extension BlockBackend {
    /// The upstream tests' `p hN`: the first four bytes as text.
    func peek(_ count: Int = 4) async throws -> String {
        try await readString(count, at: 0)
    }
}

/// Layers for the multi-conn filter with the given parameters.
func multiConn(
    _ mode: MultiConnConfiguration.Mode = .auto,
    _ tracking: MultiConnConfiguration.DirtyTracking = .connection,
    byName: Bool = false,
    serialized: Bool = false
) -> MultiConnLayer {
    MultiConnLayer(
        MultiConnConfiguration(
            mode: mode, dirtyTracking: tracking, groupsByExportName: byName, connectionsAreSerialized: serialized))
}
