import NBDCore
import NBDServer
import ServiceLifecycle

/// An ``NBDServer`` as a swift-service-lifecycle `Service`, to run in a `ServiceGroup` beside the
/// rest of a program's services.
///
/// ```swift
/// let server = NBDServer(provider: try MemoryBackendProvider(size: 1 << 30))
/// let service = NBDServerService(server: server, listeningOn: [.unix(path: "/tmp/nbd.sock")])
/// let group = ServiceGroup(
///     services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// try await group.run()   // SIGTERM: the server drains and closes its backends, then this returns
/// ```
///
/// ``run()`` listens on ``addresses`` (if any), then serves until one of:
/// - graceful shutdown (the group received one of its `gracefulShutdownSignals`, or someone called
///   `triggerGracefulShutdown()`): the server shuts down gracefully — it stops accepting, answers
///   every request it has already received, closes every backend and runs the provider's
///   `shutdown()` — and `run()` returns;
/// - cancellation of the group's task: the same graceful shutdown (``NBDServer/run()`` honours
///   cancellation that way), so a cancelled group loses no write the server acknowledged either;
/// - someone else called ``NBDServer/shutdown()``.
///
/// Either way `run()` returns only when the shutdown has finished. How long that may take is
/// bounded by ``ServerConfiguration/shutdownGracePeriod`` plus the backends' close; give the
/// group's `gracefulShutdownTimeout`, if set, more than that.
///
/// The server may also listen before the group starts (``NBDServer/listen(on:)`` returns the port
/// picked for TCP port 0), with no ``addresses`` here.
public struct NBDServerService: Service {
    /// The server this service runs.
    public let server: NBDServer
    /// Where ``run()`` starts listening.
    public let addresses: [ListenAddress]

    /// Creates a service for `server` that listens on `addresses` when it starts.
    public init(server: NBDServer, listeningOn addresses: [ListenAddress] = []) {
        self.server = server
        self.addresses = addresses
    }

    /// Listens on ``addresses`` and serves until graceful shutdown or cancellation, as described
    /// on the type; returns once the server has shut down.
    ///
    /// - Throws: `NBDError` when an address cannot be bound; the server is then shut down before
    ///   the error is thrown, so nothing it started is left behind.
    public func run() async throws {
        do throws(NBDError) {
            for address in addresses {
                try server.listen(on: address)
            }
        } catch {
            await server.shutdown()
            throw error
        }
        let server = self.server
        await withGracefulShutdownHandler {
            await server.run()
        } onGracefulShutdown: {
            // The handler may not suspend: the shutdown runs in a task of its own and
            // `server.run()` above returns when it has finished.
            Task { await server.shutdown() }
        }
    }
}
