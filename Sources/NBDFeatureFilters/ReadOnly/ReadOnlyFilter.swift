#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import NBDCore

/// nbdkit's readonly filter for one connection: makes the export read-only, always or only while a
/// switch file exists.
///
/// Without a switch file the export advertises `NBD_FLAG_READ_ONLY`, so the server refuses every
/// write, zero and trim with `EPERM` before it reaches the chain (nbdkit's `-r`). With a switch file
/// the export stays writable as the layer below allows, and each write, zero or trim is refused with
/// `EPERM` while the file exists: deleting or creating the file switches a running export.
///
/// ```swift
/// let export = try MemoryBackendProvider(size: 1 << 30)
///     .wrapped { next, _ in ReadOnlyFilter(wrapping: next, switchFile: "/run/disk.ro") }
/// ```
public struct ReadOnlyFilter<Next: BlockBackend>: Filter {
    /// The layer below.
    public let next: Next
    /// Read-only capabilities without a switch file; the layer below's with one.
    public let capabilities: Capabilities
    /// The file whose existence makes the export read-only, or `nil` for always read-only.
    public let switchFile: String?

    /// Wraps `next`; read-only always when `switchFile` is `nil`, else while that file exists.
    public init(wrapping next: Next, switchFile: String? = nil) {
        self.next = next
        self.switchFile = switchFile
        self.capabilities = switchFile == nil ? next.capabilities.readOnly : next.capabilities
    }

    /// Throws `EPERM` when the export is read-only now. nbdkit tests the file with `access(R_OK)`,
    /// so a file the server cannot read does not switch it either.
    @usableFromInline
    func refuseIfReadOnly(_ operation: String) throws(NBDError) {
        guard let switchFile else {
            throw NBDError(.notPermitted, "\(operation) refused: the readonly filter makes this export read-only")
        }
        if access(switchFile, R_OK) == 0 {
            throw NBDError(
                .notPermitted, "\(operation) refused: the export is read-only while \(switchFile) exists (readonly-file)")
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try refuseIfReadOnly("write")
        try await next.write(data, at: offset, flags: flags)
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try refuseIfReadOnly("zero")
        try await next.zero(count: count, at: offset, flags: flags)
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try refuseIfReadOnly("trim")
        try await next.trim(count: count, at: offset, flags: flags)
    }
}
