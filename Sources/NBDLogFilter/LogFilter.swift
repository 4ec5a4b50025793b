import NBDCore
import Synchronization

/// nbdkit's log filter for one connection: a line in ``LogFile`` when the connection opens
/// (`Connect`, with what the layer below offers), when each request starts and when it ends (with its
/// result), and when the connection closes (`Disconnect`), in nbdkit's format so that scripts written
/// for nbdkit's logs read these:
///
/// ```text
/// 2026-11-30 05:48:26.562795 connection=1 Connect export="" tls=0 size=0x100000 minsize=0x0 prefsize=0x0 maxsize=0x0 write=1 flush=1 rotational=0 trim=1 zero=2 fua=2 extents=1 cache=2 fast_zero=1
/// 2026-11-30 05:48:26.563350 connection=1 Write id=1 offset=0x400 count=0x200 fua=0 ...
/// 2026-11-30 05:48:26.563400 connection=1 ...Write id=1 return=0
/// 2026-11-30 05:48:30.623368 connection=1 ...Read id=2 return=-1 error=ENOSPC
/// 2026-11-30 05:48:26.568937 connection=1 Disconnect transactions=2
/// ```
///
/// Times are UTC; `id` counts this connection's requests from 1. Without a log file the filter passes
/// every request straight through.
public struct LogFilter<Next: BlockBackend>: Filter {
    public let next: Next
    @usableFromInline let log: ConnectionLog?

    /// Wraps `next`, writing to `file` (none: pass-through) and logging the `Connect` line now.
    public init(wrapping next: Next, file: LogFile?, connection: ConnectionInfo) {
        self.next = next
        guard let file else {
            log = nil
            return
        }
        let log = ConnectionLog(file: file, number: file.nextConnection())
        log.connect(export: connection.exportName, capabilities: next.capabilities)
        self.log = log
    }

    // Each operation is inlinable up to the nil check, so a static stack without a log file is
    // specialized and costs that check; the logging itself stays out of line.

    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        guard let log else { return try await next.read(into: buffer, at: offset, flags: flags) }
        try await loggedRead(log, into: buffer, at: offset, flags: flags)
    }

    @usableFromInline
    func loggedRead(
        _ log: ConnectionLog, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags
    ) async throws(NBDError) {
        let id = log.enter("Read") { line in
            line.text(" offset=")
            line.hex(offset)
            line.text(" count=")
            line.hex(UInt64(buffer.count))
        }
        do {
            try await next.read(into: buffer, at: offset, flags: flags)
            log.leave("Read", id: id, error: nil)
        } catch {
            log.leave("Read", id: id, error: error)
            throw error
        }
    }

    @inlinable
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        guard let log else { return try await next.write(data, at: offset, flags: flags) }
        try await loggedWrite(log, data, at: offset, flags: flags)
    }

    @usableFromInline
    func loggedWrite(_ log: ConnectionLog, _ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        let id = log.enter("Write") { line in
            line.text(" offset=")
            line.hex(offset)
            line.text(" count=")
            line.hex(UInt64(data.count))
            line.flag("fua", flags.contains(.fua))
        }
        do {
            try await next.write(data, at: offset, flags: flags)
            log.leave("Write", id: id, error: nil)
        } catch {
            log.leave("Write", id: id, error: error)
            throw error
        }
    }

    @inlinable
    public func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        guard let log else { return try await next.zero(count: count, at: offset, flags: flags) }
        try await loggedZero(log, count: count, at: offset, flags: flags)
    }

    @usableFromInline
    func loggedZero(_ log: ConnectionLog, count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        let id = log.enter("Zero") { line in
            line.text(" offset=")
            line.hex(offset)
            line.text(" count=")
            line.hex(count)
            // nbdkit's `trim` here means "may punch a hole": the absence of NO_HOLE.
            line.flag("trim", !flags.contains(.noHole))
            line.flag("fua", flags.contains(.fua))
            line.flag("fast", flags.contains(.fastZero))
        }
        do {
            try await next.zero(count: count, at: offset, flags: flags)
            log.leave("Zero", id: id, error: nil)
        } catch {
            log.leave("Zero", id: id, error: error)
            throw error
        }
    }

    @inlinable
    public func trim(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        guard let log else { return try await next.trim(count: count, at: offset, flags: flags) }
        try await loggedTrim(log, count: count, at: offset, flags: flags)
    }

    @usableFromInline
    func loggedTrim(_ log: ConnectionLog, count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        let id = log.enter("Trim") { line in
            line.text(" offset=")
            line.hex(offset)
            line.text(" count=")
            line.hex(count)
            line.flag("fua", flags.contains(.fua))
        }
        do {
            try await next.trim(count: count, at: offset, flags: flags)
            log.leave("Trim", id: id, error: nil)
        } catch {
            log.leave("Trim", id: id, error: error)
            throw error
        }
    }

    @inlinable
    public func flush(flags: CommandFlags) async throws(NBDError) {
        guard let log else { return try await next.flush(flags: flags) }
        try await loggedFlush(log, flags: flags)
    }

    @usableFromInline
    func loggedFlush(_ log: ConnectionLog, flags: CommandFlags) async throws(NBDError) {
        let id = log.enter("Flush") { _ in }
        do {
            try await next.flush(flags: flags)
            log.leave("Flush", id: id, error: nil)
        } catch {
            log.leave("Flush", id: id, error: error)
            throw error
        }
    }

    @inlinable
    public func cache(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        guard let log else { return try await next.cache(count: count, at: offset, flags: flags) }
        try await loggedCache(log, count: count, at: offset, flags: flags)
    }

    @usableFromInline
    func loggedCache(_ log: ConnectionLog, count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError)
    {
        let id = log.enter("Cache") { line in
            line.text(" offset=")
            line.hex(offset)
            line.text(" count=")
            line.hex(count)
        }
        do {
            try await next.cache(count: count, at: offset, flags: flags)
            log.leave("Cache", id: id, error: nil)
        } catch {
            log.leave("Cache", id: id, error: error)
            throw error
        }
    }

    @inlinable
    public func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        guard let log else { return try await next.extents(count: count, at: offset, flags: flags) }
        return try await loggedExtents(log, count: count, at: offset, flags: flags)
    }

    @usableFromInline
    func loggedExtents(_ log: ConnectionLog, count: UInt64, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError) -> [Extent]
    {
        let id = log.enter("Extents") { line in
            line.text(" offset=")
            line.hex(offset)
            line.text(" count=")
            line.hex(count)
            line.flag("req_one", flags.contains(.requestOne))
        }
        do {
            let extents = try await next.extents(count: count, at: offset, flags: flags)
            log.leaveExtents(id: id, offset: offset, extents: extents)
            return extents
        } catch {
            log.leave("Extents", id: id, error: error)
            throw error
        }
    }

    public func close() async {
        log?.disconnect()
        await next.close()
    }
}
