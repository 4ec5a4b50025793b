/// One export a server advertises in its answer to `NBD_OPT_LIST`: nbdkit's `nbdkit_add_export`.
public struct ExportEntry: Sendable, Hashable {
    /// The export name a client can ask for. `""` stands for the default export: the server lists
    /// it under the stack's ``BackendProvider/defaultExport(_:)`` (nbdkit's
    /// `nbdkit_use_default_export`).
    public var name: String
    /// A human-readable description, or `nil` to let the server use its configured one.
    public var description: String?

    /// Creates an entry.
    public init(name: String, description: String? = nil) {
        self.name = name
        self.description = description
    }
}
