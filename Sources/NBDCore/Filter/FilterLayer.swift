/// A configured filter that can wrap any connection's stack at run time: the dynamic form of a
/// ``Filter``, used for stacks built from a command line or a configuration file.
///
/// One layer value serves every connection of a server, so it holds what the filter shares between
/// connections (a ``MultiConn`` coordinator, a statistics collector) and its parameters.
public protocol FilterLayer: Sendable {
    /// The filter's name as used on the command line, such as `multi-conn`.
    var name: String { get }

    /// Wraps one connection's stack. Throwing refuses the connection (nbdkit's `prepare` failing).
    func wrap(_ next: AnyBlockBackend, for connection: ConnectionInfo) async throws(NBDError) -> AnyBlockBackend

    /// Called once when the server stops, after every connection closed.
    func shutdown() async
}

extension FilterLayer {
    public func shutdown() async {}
}
