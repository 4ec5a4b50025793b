import NBDCore
import Synchronization

/// nbdkit's openonce filter: opens the layers below once per export name and lets every connection
/// to that export share what was opened, for a backend slow to open (a remote session). What was
/// opened stays open until the server shuts down.
///
/// Sharing one backend defeats per-connection state below, such as multi-conn's consistency per
/// connection: the connections really are one below this filter.
public struct OpenOnceLayer: FilterLayer {
    public var name: String { Self.filterName }

    private final class Shared: Sendable {
        let opened = LockedValue<[String: Task<Result<AnyBlockBackend, NBDError>, Never>]>([:])
    }
    private let shared = Shared()

    /// Creates the layer.
    public init() {}

    public func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend
    {
        AnyBlockBackend(SharedBackend(next: next))
    }

    /// Opens below for the first connection to each export name and hands every later connection
    /// the same backend. A failed open is forgotten, so the next client tries again.
    public func open(for connection: ConnectionInfo, below openBelow: @escaping OpenBelow) async throws(NBDError)
        -> AnyBlockBackend
    {
        let name = connection.exportName
        let task = shared.opened.withLock { opened in
            if let task = opened[name] { return task }
            let task = Task { () -> Result<AnyBlockBackend, NBDError> in
                do throws(NBDError) {
                    return .success(try await openBelow(connection))
                } catch {
                    return .failure(error)
                }
            }
            opened[name] = task
            return task
        }
        switch await task.value {
        case .success(let backend):
            return AnyBlockBackend(SharedBackend(next: backend))
        case .failure(let error):
            shared.opened.withLock { opened in
                if opened[name] == task { opened[name] = nil }
            }
            throw error
        }
    }

    /// Closes every backend opened below.
    public func shutdown() async {
        let tasks = shared.opened.withLock { opened in
            defer { opened = [:] }
            return Array(opened.values)
        }
        for task in tasks {
            if case .success(let backend) = await task.value { await backend.close() }
        }
    }
}

/// A connection's view of a shared backend: closing it leaves the backend open for the others.
struct SharedBackend: Filter {
    let next: AnyBlockBackend

    func close() async {}
}

extension OpenOnceLayer: ConfigurableFilterLayer {
    public static var filterName: String { "openonce" }
    public static var summary: String {
        "open the layers below once per export and share them between all clients until shutdown"
    }
    public static var parameters: [ParameterDescription] { [] }

    /// Creates the layer; it takes no parameters.
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init()
    }
}
