import NBDCore
import Synchronization

/// One connection's side of the log: its number, its request counter, and the line formats.
@usableFromInline
final class ConnectionLog: Sendable {
    let file: LogFile
    let number: UInt64
    private let requests = Atomic<UInt64>(0)

    /// Room for the longest fixed-format line (a Zero start line is about 110 bytes).
    static let lineCapacity = 256

    init(file: LogFile, number: UInt64) {
        self.file = file
        self.number = number
    }

    /// Formats one line (timestamp, connection, then `body`) on the stack and writes it.
    private func line(capacity: Int = lineCapacity, _ body: (inout LogLine) -> Void) {
        withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 1) { buffer in
            var line = LogLine(buffer: buffer)
            line.timestamp()
            line.text(" connection=")
            line.decimal(number)
            line.byte(UInt8(ascii: " "))
            body(&line)
            line.byte(UInt8(ascii: "\n"))
            file.write(line.bytes)
        }
    }

    /// Logs a request's start and returns its id.
    func enter(_ action: StaticString, _ fields: (inout LogLine) -> Void) -> UInt64 {
        let id = requests.wrappingAdd(1, ordering: .relaxed).newValue
        line { line in
            line.text(action)
            line.text(" id=")
            line.decimal(id)
            fields(&line)
            line.text(" ...")
        }
        return id
    }

    /// Logs a request's end: `return=0`, or `return=-1 error=NAME`.
    func leave(_ action: StaticString, id: UInt64, error: NBDError?) {
        line { line in
            line.text("...")
            line.text(action)
            line.text(" id=")
            line.decimal(id)
            if let error {
                line.text(" return=-1 error=")
                line.text(error.code.logName)
            } else {
                line.text(" return=0")
            }
        }
    }

    /// Logs an extents request's end with the extents, as nbdkit lists them: absolute offset, length
    /// and type of each, then `return=0`.
    func leaveExtents(id: UInt64, offset: UInt64, extents: [Extent]) {
        line(capacity: Self.lineCapacity + extents.count * 48) { line in
            line.text("...Extents id=")
            line.decimal(id)
            line.text(" extents=(")
            var position = offset
            for (index, extent) in extents.enumerated() {
                if index > 0 { line.byte(UInt8(ascii: " ")) }
                line.hex(position)
                line.byte(UInt8(ascii: " "))
                line.hex(extent.length)
                switch (extent.flags.contains(.hole), extent.flags.contains(.zero)) {
                case (true, true): line.text(" \"hole,zero\"")
                case (true, false): line.text(" \"hole\"")
                case (false, true): line.text(" \"zero\"")
                case (false, false): line.text(" \"\"")
                }
                position += extent.length
            }
            line.text(") return=0")
        }
    }

    /// The `Connect` line: the export and what the layer below offers, with nbdkit's numbers
    /// (0 none, 1 emulated, 2 native for zero, fua and cache; block sizes 0 when none are stated).
    func connect(export: String, capabilities caps: Capabilities) {
        let sizes = caps.blockSize
        let stated =
            sizes.minimum != 1 || sizes.preferred != 4096
            || sizes.maximumPayload != BlockSizeConstraints.default.maximumPayload
        line(capacity: Self.lineCapacity + export.utf8.count * 2) { line in
            line.text("Connect export=")
            line.quoted(export)
            line.text(" tls=0 size=")
            line.hex(caps.size)
            line.text(" minsize=")
            line.hex(stated ? UInt64(sizes.minimum) : 0)
            line.text(" prefsize=")
            line.hex(stated ? UInt64(sizes.preferred) : 0)
            line.text(" maxsize=")
            line.hex(stated ? UInt64(sizes.maximumPayload) : 0)
            line.flag("write", caps.isWritable)
            line.flag("flush", caps.canFlush)
            line.flag("rotational", caps.isRotational)
            line.flag("trim", caps.canTrim)
            line.text(caps.canZero ? " zero=2" : " zero=0")
            line.text(" fua=")
            line.decimal(UInt64(caps.fua.rawValue))
            line.flag("extents", caps.canExtents)
            line.text(" cache=")
            line.decimal(UInt64(caps.cache.rawValue))
            line.flag("fast_zero", caps.canFastZero)
        }
    }

    /// The `Disconnect` line with the number of requests the connection made.
    func disconnect() {
        let count = requests.load(ordering: .relaxed)
        line { line in
            line.text("Disconnect transactions=")
            line.decimal(count)
        }
    }
}
