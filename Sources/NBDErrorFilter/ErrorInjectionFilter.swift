import NBDCore

/// Fails requests on purpose, to test how clients and the layers above handle errors: nbdkit's
/// `error` filter. Each operation has its own ``ErrorInjectionPolicy``; an injected error never
/// reaches the layer below.
public struct ErrorInjectionFilter<Next: BlockBackend>: Filter {
    /// The layer below, which an injected error never reaches.
    public let next: Next
    /// The policy per operation.
    public let policies: ErrorInjectionPolicies

    /// Wraps `next` with the given policies.
    public init(wrapping next: Next, policies: ErrorInjectionPolicies) {
        self.next = next
        self.policies = policies
    }

    @inlinable
    func check(_ policy: ErrorInjectionPolicy, _ operation: String) throws(NBDError) {
        if policy.shouldInject() {
            throw NBDError(policy.code, "injecting \(policy.code.name) error into \(operation)")
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        try check(policies.read, "pread")
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check(policies.write, "pwrite")
        try await next.write(data, at: offset, flags: flags)
    }

    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check(policies.zero, "zero")
        try await next.zero(count: count, at: offset, flags: flags)
    }

    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check(policies.trim, "trim")
        try await next.trim(count: count, at: offset, flags: flags)
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        try check(policies.flush, "flush")
        try await next.flush(flags: flags)
    }

    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        try check(policies.cache, "cache")
        try await next.cache(count: count, at: offset, flags: flags)
    }

    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        try check(policies.extents, "extents")
        return try await next.extents(count: count, at: offset, flags: flags)
    }
}

/// One ``ErrorInjectionPolicy`` per operation.
public struct ErrorInjectionPolicies: Sendable, Hashable {
    /// The policy for reads.
    public var read: ErrorInjectionPolicy
    /// The policy for writes.
    public var write: ErrorInjectionPolicy
    /// The policy for write-zeroes requests.
    public var zero: ErrorInjectionPolicy
    /// The policy for trims.
    public var trim: ErrorInjectionPolicy
    /// The policy for flushes.
    public var flush: ErrorInjectionPolicy
    /// The policy for cache requests.
    public var cache: ErrorInjectionPolicy
    /// The policy for block status requests.
    public var extents: ErrorInjectionPolicy

    /// Uses `policy` for every operation.
    public init(all policy: ErrorInjectionPolicy = ErrorInjectionPolicy()) {
        read = policy
        write = policy
        zero = policy
        trim = policy
        flush = policy
        cache = policy
        extents = policy
    }
}
