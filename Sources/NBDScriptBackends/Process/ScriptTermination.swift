/// How a script's process ended.
package enum ScriptTermination: Sendable, Hashable {
    /// It exited with this status (0 to 255).
    case exited(Int32)
    /// A signal killed it (a crash, or someone killed it).
    case signalled(Int32)
}
