import NBDCore

/// nbdkit's limit filter for one connection: counts the connection against a ``ConnectionLimit``
/// while it is open, so that no more than the limit are served at once.
///
/// Creating the filter is the admission: it throws `EPERM` when the limit is reached, which refuses
/// the connection in the handshake with `NBD_REP_ERR_POLICY` and the reason.
public struct LimitFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// The layer below's capabilities; without multi-conn when only one client is allowed, since a
    /// second connection would be refused (nbdkit leaves multi-conn as the layer below says).
    public let capabilities: Capabilities
    /// The shared count.
    public let limit: ConnectionLimit

    /// Admits one connection over `next`.
    ///
    /// - Throws: `NBDError` (`EPERM`) when `limit` connections are already open.
    public init(wrapping next: Next, limit: ConnectionLimit) throws(NBDError) {
        try limit.admit()
        var capabilities = next.capabilities
        if limit.limit == 1 { capabilities.canMultiConn = false }
        self.next = next
        self.limit = limit
        self.capabilities = capabilities
    }

    /// Closes the layer below and lets another client in.
    public func close() async {
        await next.close()
        limit.release()
    }
}
