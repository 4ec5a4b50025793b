import Synchronization

/// Coordinates the multi-conn filter across connections: registers each connection in its group,
/// and runs the emulate-mode flush fan-out.
///
/// One `MultiConn` serves one export (one server). The request path never hops to it: reads and
/// writes only touch atomic dirty bits. Flushes in emulate mode come here, where they are
/// **coalesced**: a flush that arrives while a fan-out is under way waits for the next fan-out, which
/// starts when the current one ends and serves every flush that arrived meanwhile. Each fan-out
/// flushes the selected connections **concurrently**, not one after another as nbdkit does.
///
/// ```swift
/// let multiConn = MultiConn(MultiConnConfiguration(mode: .emulate))
/// let export = provider.wrapped { next, connection in
///     try await multiConn.filter(wrapping: next, for: connection)
/// }
/// ```
public actor MultiConn {
    /// The filter's parameters, shared by every connection.
    public nonisolated let configuration: MultiConnConfiguration
    /// Where the fan-out runs the other connections' flushes; `nil` for the global executor. Give a
    /// dedicated executor when flushes block in system calls (a file's `fdatasync`).
    public nonisolated let flushExecutor: (any TaskExecutor)?

    private enum GroupKey: Hashable {
        case all
        case export(String)
    }

    /// What a waiting flush request is told when it resumes: its round's outcome, or that it is the
    /// one to run the next round.
    private enum Turn {
        case finished(Result<Void, NBDError>)
        case drive
    }

    private struct GroupState {
        let group: MultiConnGroup
        /// Flush requests waiting for the next fan-out round.
        var pending: [CheckedContinuation<Turn, Never>] = []
        /// A round is under way (run by one of the flush requests themselves).
        var running = false
        /// Members taking part in the round under way; they may not close until it ends.
        var roundMembers: Set<UInt64> = []
        var roundEnded: [CheckedContinuation<Void, Never>] = []
    }

    private var groups: [GroupKey: GroupState] = [:]
    /// Fan-out rounds completed, for tests and diagnostics.
    public private(set) var completedFanOuts = 0

    /// Creates a coordinator with the given parameters.
    public init(_ configuration: MultiConnConfiguration = MultiConnConfiguration(), flushExecutor: (any TaskExecutor)? = nil) {
        self.configuration = configuration
        self.flushExecutor = flushExecutor
    }

    /// Wraps one connection's stack in the multi-conn filter and registers the connection in its
    /// group. Throws, refusing the connection, when emulation is needed but the layer below cannot
    /// flush.
    public func filter<Next: BlockBackend>(
        wrapping next: Next,
        for connection: ConnectionInfo
    ) throws(NBDError) -> MultiConnFilter<Next> {
        let below = next.capabilities
        let mode: MultiConnConfiguration.Mode
        if configuration.mode == .auto {
            mode = configuration.connectionsAreSerialized ? .disable : below.canMultiConn ? .plugin : .emulate
        } else {
            mode = configuration.mode
        }
        if mode == .emulate && !below.canFlush {
            throw NBDError(
                .invalidArgument,
                "emulating multi-conn requires working flush: the layer below cannot flush "
                    + "(use multi-conn-mode=plugin or disable, or a backend with flush)")
        }
        let key: GroupKey = configuration.groupsByExportName ? .export(connection.exportName) : .all
        let group = groups[key]?.group ?? MultiConnGroup(exportName: configuration.groupsByExportName ? connection.exportName : nil)
        if groups[key] == nil {
            groups[key] = GroupState(group: group)
        }
        let member = MultiConnMember(id: connection.id) { () async throws(NBDError) in
            try await next.flush(flags: [])
        }
        group.members.withLock { $0.append(member) }
        return MultiConnFilter(
            next: next, coordinator: self, group: group, member: member, mode: mode,
            tracking: configuration.dirtyTracking)
    }

    /// The number of connections registered in each group, keyed by export name (`nil` when
    /// connections are not grouped by name). For tests and diagnostics.
    public func connectionCounts() -> [String?: Int] {
        var counts: [String?: Int] = [:]
        for state in groups.values {
            counts[state.group.exportName] = state.group.memberList.count
        }
        return counts
    }

    /// Flush requests waiting for a fan-out round that has not started yet, for tests.
    package func waitingFlushCount() -> Int {
        groups.values.reduce(0) { $0 + $1.pending.count }
    }

    /// Removes a closing connection from its group, first waiting for a fan-out that is flushing it.
    func unregister(_ member: MultiConnMember, from group: MultiConnGroup) async {
        let key: GroupKey = group.exportName.map { .export($0) } ?? .all
        while let state = groups[key], state.roundMembers.contains(member.id) {
            await withCheckedContinuation { continuation in
                groups[key]?.roundEnded.append(continuation)
            }
        }
        let remaining = group.members.withLock { members in
            members.removeAll { $0 === member }
            return members.count
        }
        if remaining == 0, let state = groups[key], state.group === group, !state.running {
            groups[key] = nil
        }
    }

    /// Flushes every connection of `group` that needs it, coalescing with other flush requests, and
    /// returns when a fan-out that started after this call has finished.
    ///
    /// The rounds are run by the flush requests themselves, not by a task of the coordinator's own:
    /// the request that finds no round under way runs one for itself and for every request waiting
    /// at that moment, then hands the next round to the first request that arrived meanwhile. So the
    /// fan-out runs on the executor of a requesting task (the server's pool for slow operations),
    /// and its child tasks inherit that preference unless ``flushExecutor`` is set.
    @usableFromInline
    func flushGroup(_ group: MultiConnGroup) async throws(NBDError) {
        let key: GroupKey = group.exportName.map { .export($0) } ?? .all
        let turn: Turn
        if groups[key, default: GroupState(group: group)].running {
            turn = await withCheckedContinuation { continuation in
                groups[key]?.pending.append(continuation)
            }
        } else {
            groups[key]?.running = true
            turn = .drive
        }
        switch turn {
        case .finished(let result):
            try result.get()
        case .drive:
            try await runRound(key).get()
        }
    }

    /// Runs one round for the caller and every request waiting now, then passes the turn on.
    private func runRound(_ key: GroupKey) async -> Result<Void, NBDError> {
        guard var state = groups[key] else { return .success(()) }
        let waiters = state.pending
        state.pending = []
        let members = state.group.memberList
        state.roundMembers = Set(members.map(\.id))
        groups[key] = state
        let result = await Self.fanOut(
            group: state.group, members: members, tracking: configuration.dirtyTracking, executor: flushExecutor)
        completedFanOuts += 1
        groups[key]?.roundMembers = []
        for continuation in groups[key]?.roundEnded ?? [] {
            continuation.resume()
        }
        groups[key]?.roundEnded = []
        for waiter in waiters {
            waiter.resume(returning: .finished(result))
        }
        if let next = groups[key]?.pending.first {
            groups[key]?.pending.removeFirst()
            next.resume(returning: .drive)
        } else {
            groups[key]?.running = false
            if let current = groups[key], current.group.memberList.isEmpty {
                groups[key] = nil
            }
        }
        return result
    }

    /// One fan-out round: choose the members that need a flush (nbdkit's rules), flush them
    /// concurrently, then flush again every member that was used while the first wave ran, and
    /// restore the dirty state of any that failed so the next flush retries them.
    ///
    /// The second wave closes a gap that a concurrent fan-out (and nbdkit's serial one, with a
    /// backend that accepts parallel requests) leaves open: a connection flushed early in the wave
    /// drops its cache, and a request that reaches it while the others are still being flushed may
    /// refill that cache from storage that does not yet hold their writes. Without the second wave
    /// its later reads would miss data the flush promised to publish. A member with no request
    /// during the wave (always the case when requests wait for the flush, so the flush counts match
    /// nbdkit's) is not flushed twice.
    @concurrent
    private static func fanOut(
        group: MultiConnGroup,
        members: [MultiConnMember],
        tracking: MultiConnConfiguration.DirtyTracking,
        executor: (any TaskExecutor)?
    ) async -> Result<Void, NBDError> {
        // Taking the bits (rather than clearing them after the flush) means a write that completes
        // while the round runs leaves its bit set for the next flush instead of being forgotten.
        let groupWasDirty = group.dirty.exchange(false, ordering: .sequentiallyConsistent)
        var selected: [(member: MultiConnMember, bits: UInt8)] = []
        var requestsBefore: [UInt64] = []
        for member in members {
            requestsBefore.append(member.requestsStarted.load(ordering: .sequentiallyConsistent))
            let bits = member.dirty.exchange(0, ordering: .sequentiallyConsistent)
            let needsFlush =
                tracking == .off
                || (groupWasDirty && (tracking == .fast || bits & MultiConnMember.read != 0))
                || bits & MultiConnMember.wrote != 0
            if needsFlush {
                selected.append((member, bits))
            } else if bits != 0 {
                member.dirty.bitwiseOr(bits, ordering: .sequentiallyConsistent)
            }
        }
        guard !selected.isEmpty else { return .success(()) }

        if let failure = await flushWave(selected, groupWasDirty: groupWasDirty, group: group, executor: executor) {
            return .failure(failure)
        }
        // Members used since the round began, or with a request still running, may have refilled a
        // cache from storage the first wave had not finished updating.
        var touched: [(member: MultiConnMember, bits: UInt8)] = []
        for (index, member) in members.enumerated() {
            let finished = member.requestsFinished.load(ordering: .sequentiallyConsistent)
            let started = member.requestsStarted.load(ordering: .sequentiallyConsistent)
            if started != requestsBefore[index] || started != finished {
                touched.append((member, 0))
            }
        }
        if !touched.isEmpty,
            let failure = await flushWave(touched, groupWasDirty: true, group: group, executor: executor)
        {
            return .failure(failure)
        }
        return .success(())
    }

    /// Flushes `entries` concurrently. On failure the member is left dirty (its old bits plus
    /// `wrote`) and the group too, and the first error is returned.
    private static func flushWave(
        _ entries: [(member: MultiConnMember, bits: UInt8)],
        groupWasDirty: Bool,
        group: MultiConnGroup,
        executor: (any TaskExecutor)?
    ) async -> NBDError? {
        var outcomes: [Result<Void, NBDError>]
        if entries.count == 1 {
            outcomes = [await flushResult(entries[0].member)]
        } else {
            outcomes = Array(repeating: .success(()), count: entries.count)
            await withTaskGroup(of: (Int, Result<Void, NBDError>).self) { tasks in
                for (index, entry) in entries.enumerated() {
                    // `addTask(executorPreference:)` with a nil *variable* means "no preference" (the
                    // global pool), unlike a plain `addTask`, which inherits the requesting task's
                    // executor (the server's slow-operation pool). Blocking flushes must stay there.
                    if let executor {
                        tasks.addTask(executorPreference: executor) { (index, await flushResult(entry.member)) }
                    } else {
                        tasks.addTask { (index, await flushResult(entry.member)) }
                    }
                }
                for await (index, outcome) in tasks {
                    outcomes[index] = outcome
                }
            }
        }
        var firstError: NBDError?
        for (index, outcome) in outcomes.enumerated() {
            if case .failure(let error) = outcome {
                // Leave the connection dirty so the next flush tries it again.
                entries[index].member.dirty.bitwiseOr(
                    entries[index].bits | MultiConnMember.wrote, ordering: .sequentiallyConsistent)
                if groupWasDirty { group.dirty.store(true, ordering: .sequentiallyConsistent) }
                if firstError == nil {
                    firstError = NBDError(
                        error.code, "multi-conn flush of connection \(entries[index].member.id) failed: \(error.message)")
                }
            }
        }
        return firstError
    }

    private static func flushResult(_ member: MultiConnMember) async -> Result<Void, NBDError> {
        do throws(NBDError) {
            try await member.flushNext()
            return .success(())
        } catch {
            return .failure(error)
        }
    }
}
