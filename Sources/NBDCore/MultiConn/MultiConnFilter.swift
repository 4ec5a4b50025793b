import Synchronization

/// The multi-conn filter for one connection: it makes a backend with per-connection caches safe to
/// serve with `NBD_FLAG_CAN_MULTI_CONN` (emulate mode), or withholds, passes on or deduplicates
/// flushes in the other modes. Create it with ``MultiConn/filter(wrapping:for:)``.
///
/// What reaches the layer below, by mode (nbdkit's rules, see `Documentation/MultiConn.md`):
/// - **emulate**: a flush, or a write/zero/trim with FUA, flushes every connection of the group
///   that needs it (by the dirty tracking level); FUA is removed and replaced by that flush.
/// - **plugin**, **disable**, **unsafe**: requests pass through unchanged; a flush is skipped when the
///   tracking level shows that it has nothing to do.
public final class MultiConnFilter<Next: BlockBackend>: Filter {
    public let next: Next
    public let capabilities: Capabilities
    /// The mode this connection runs in (``MultiConnConfiguration/Mode/auto`` resolved).
    public let mode: MultiConnConfiguration.Mode
    @usableFromInline let tracking: MultiConnConfiguration.DirtyTracking
    @usableFromInline let coordinator: MultiConn
    @usableFromInline let group: MultiConnGroup
    @usableFromInline let member: MultiConnMember
    /// Whether the layer below shares one cache between connections (it reports multi-conn).
    @usableFromInline let nextIsMultiConn: Bool
    @usableFromInline let emulating: Bool

    init(
        next: Next, coordinator: MultiConn, group: MultiConnGroup, member: MultiConnMember,
        mode: MultiConnConfiguration.Mode, tracking: MultiConnConfiguration.DirtyTracking
    ) {
        self.next = next
        self.coordinator = coordinator
        self.group = group
        self.member = member
        self.mode = mode
        self.tracking = tracking
        self.emulating = mode == .emulate
        let below = next.capabilities
        self.nextIsMultiConn = below.canMultiConn
        var caps = below
        switch mode {
        case .emulate, .unsafe: caps.canMultiConn = true
        case .disable: caps.canMultiConn = false
        case .plugin, .auto: break
        }
        if mode == .emulate {
            // FUA now means "flush the whole group", which this filter does itself.
            if below.fua == .native { caps.fua = .emulated }
            caps.slowOperations.formUnion([.flush, .fuaRequests])
        }
        self.capabilities = caps
    }

    // MARK: Dirty tracking

    /// Counts a request in and out, so that an emulate-mode fan-out can tell whether this connection
    /// was used while it ran (see ``MultiConn``). Outside emulate mode nothing reads the counts.
    @inlinable
    func beginRequest() {
        if emulating { member.requestsStarted.add(1, ordering: .sequentiallyConsistent) }
    }

    @inlinable
    func endRequest() {
        if emulating { member.requestsFinished.add(1, ordering: .sequentiallyConsistent) }
    }

    @inlinable
    func markRead() {
        if tracking == .connection { member.mark(MultiConnMember.read) }
    }

    @inlinable
    func markWrite() {
        switch tracking {
        case .connection:
            member.mark(MultiConnMember.wrote)
            group.markDirty()
        case .fast:
            group.markDirty()
        case .off:
            break
        }
    }

    // MARK: Operations

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        beginRequest()
        defer { endRequest() }
        markRead()
        try await next.read(into: buffer, at: offset, flags: flags)
    }

    @inlinable
    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        beginRequest()
        defer { endRequest() }
        markRead()
        try await next.cache(count: count, at: offset, flags: flags)
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        beginRequest()
        let passed = beginWrite(flags)
        do {
            try await next.write(data, at: offset, flags: passed)
        } catch {
            endRequest()
            throw error
        }
        endRequest()
        guard flags.contains(.fua) else { return markWrite() }
        try await endFUAWrite(flags)
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        beginRequest()
        let passed = beginWrite(flags)
        do {
            try await next.zero(count: count, at: offset, flags: passed)
        } catch {
            endRequest()
            throw error
        }
        endRequest()
        guard flags.contains(.fua) else { return markWrite() }
        try await endFUAWrite(flags)
    }

    @inlinable
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        beginRequest()
        let passed = beginWrite(flags)
        do {
            try await next.trim(count: count, at: offset, flags: passed)
        } catch {
            endRequest()
            throw error
        }
        endRequest()
        guard flags.contains(.fua) else { return markWrite() }
        try await endFUAWrite(flags)
    }

    /// Whether flushes are skipped by the per-connection rule (plugin-like modes over a layer without
    /// multi-conn, connection tracking).
    @inlinable
    var usesPerConnectionRule: Bool {
        !emulating && tracking == .connection && !nextIsMultiConn
    }

    /// Marks the connection dirty before a write-like request and returns the flags to pass down.
    /// As in nbdkit, a FUA request outside emulate mode does not dirty the group. Under the
    /// per-connection rule it still dirties the connection: the layer below may keep the FUA data
    /// in its cache as well (a strict-FUA cache does), and skipping its next flush would lose that.
    @inlinable
    func beginWrite(_ flags: CommandFlags) -> CommandFlags {
        guard flags.contains(.fua) else {
            markWrite()
            return flags
        }
        if usesPerConnectionRule { member.mark(MultiConnMember.wrote) }
        guard emulating else { return flags }
        markWrite()
        return flags.subtracting(.fua)
    }

    /// After a FUA write-like request is in the layer below: in emulate mode, marks the connection
    /// dirty again and flushes the group; under the per-connection rule, marks other connections'
    /// cached reads stale. (A plain write only marks the connection dirty again, inline in the caller:
    /// a fan-out that took the bits while the write was under way must not make a later flush skip it.
    /// The callers test for FUA themselves so that the common case stays synchronous: awaiting even
    /// an inlined async helper costs a frame, about 20 ns per write in the `RequestPath` benchmark.)
    @inlinable
    func endFUAWrite(_ flags: CommandFlags) async throws(NBDError) {
        if emulating {
            markWrite()
            try await coordinator.flushGroup(group)
        } else if usesPerConnectionRule {
            // The FUA made this connection's data durable, so others' cached reads may be stale.
            member.mark(MultiConnMember.wrote)
            group.markReadersStale(except: member)
        }
    }

    public func flush(flags: CommandFlags) async throws(NBDError) {
        if emulating {
            return try await coordinator.flushGroup(group)
        }
        switch tracking {
        case .off:
            try await next.flush(flags: flags)
        case .fast:
            try await flushIfGroupDirty(flags: flags)
        case .connection where nextIsMultiConn:
            // One flush below covers every connection: skip it when nobody wrote, and clear everyone.
            try await flushIfGroupDirty(flags: flags)
        case .connection:
            try await flushIfConnectionDirty(flags: flags)
        }
    }

    /// Flushes unless the group is clean and no other flush is under way (whose writes this flush
    /// would otherwise reply before they are durable).
    func flushIfGroupDirty(flags: CommandFlags) async throws(NBDError) {
        group.flushesInFlight.add(1, ordering: .sequentiallyConsistent)
        defer { group.flushesInFlight.subtract(1, ordering: .sequentiallyConsistent) }
        let wasDirty = group.dirty.exchange(false, ordering: .sequentiallyConsistent)
        if !wasDirty && group.flushesInFlight.load(ordering: .sequentiallyConsistent) == 1 {
            return
        }
        do {
            try await next.flush(flags: flags)
        } catch {
            if wasDirty { group.dirty.store(true, ordering: .sequentiallyConsistent) }
            throw error
        }
    }

    /// The documented per-connection rule for a layer below without multi-conn: flush when this
    /// connection wrote, or read before another connection made data durable. nbdkit's code instead
    /// passes every flush down once anything was written (see `Documentation/MultiConn.md`).
    func flushIfConnectionDirty(flags: CommandFlags) async throws(NBDError) {
        member.flushesInFlight.add(1, ordering: .sequentiallyConsistent)
        defer { member.flushesInFlight.subtract(1, ordering: .sequentiallyConsistent) }
        let bits = member.dirty.exchange(0, ordering: .sequentiallyConsistent)
        let needed = MultiConnMember.wrote | MultiConnMember.stale
        if bits & needed == 0 && member.flushesInFlight.load(ordering: .sequentiallyConsistent) == 1 {
            if bits != 0 { member.dirty.bitwiseOr(bits, ordering: .sequentiallyConsistent) }
            return
        }
        do {
            try await next.flush(flags: flags)
        } catch {
            member.dirty.bitwiseOr(bits, ordering: .sequentiallyConsistent)
            throw error
        }
        if bits & MultiConnMember.wrote != 0 {
            group.markReadersStale(except: member)
        }
    }

    public func close() async {
        await coordinator.unregister(member, from: group)
        await next.close()
    }
}
