import NBDCore
import NBDWire

/// What the handshake settled for one connection: the opened backend and the protocol features the
/// transmission phase must honour.
struct NegotiatedExport<Backend: BlockBackend> {
    /// The connection's stack, opened with `provider.open`; closed once after the last request.
    var backend: Backend
    /// The export name the client asked for.
    var exportName: String
    /// The outermost layer's capabilities, made read-only if the server is, with the server's payload
    /// limit applied: what requests are validated against.
    var capabilities: Capabilities
    /// Whether `NBD_OPT_STRUCTURED_REPLY` (or `NBD_OPT_EXTENDED_HEADERS`, which implies it) was
    /// acknowledged.
    var structuredReplies: Bool
    /// Whether `NBD_OPT_EXTENDED_HEADERS` was acknowledged: 32-byte request and reply headers.
    var extendedHeaders: Bool
    /// Whether `base:allocation` was selected with `NBD_OPT_SET_META_CONTEXT`.
    var baseAllocation: Bool

    /// How the connection's replies are framed.
    var framing: ReplyFraming {
        extendedHeaders ? .extended : structuredReplies ? .structured : .simple
    }
}

/// The ID the server gives the `base:allocation` meta context.
let baseAllocationContextID: UInt32 = 1
/// The only meta context the server offers.
let baseAllocationContextName = "base:allocation"
