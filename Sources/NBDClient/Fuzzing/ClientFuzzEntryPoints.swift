import NBDCore
import NBDWire

/// Entry points for the libFuzzer target `Fuzz/ClientReplies` (see `Fuzz/run.sh`) and its corpus
/// replay in `swift test`: arbitrary bytes go through ``ReplyParser`` and ``ReplyProgress`` exactly
/// as the connection's reader uses them, with a fixed set of requests in flight.
///
/// Invariants checked on every input, beyond "does not crash": each event consumes at least one byte
/// and no more than it was given; data and hole chunks lie inside their request; block status
/// covers at most the request, and exactly one extent with `REQ_ONE`; a finished request is removed
/// and a reply to it afterwards is a protocol violation.
package enum ClientFuzzEntryPoints {
    /// `data[0]`: bit 0 structured replies, bit 1 `base:allocation` negotiated (context id 1), bit 2
    /// `REQ_ONE` on the block status request, bit 3 extended headers. The rest is what the server
    /// sends. Requests in flight: cookie 1 read 4096 at 0, 2 read 512 at 8192, 3 block status 65536
    /// at 0, 4 write 100 at 4096, 5 flush, 6 write zeroes 4096 at 0, 7 write zeroes 5 GiB at 4 GiB,
    /// 8 block status 6 GiB at 0 (the last two need extended headers on a real connection).
    package static func replies(_ data: UnsafeRawBufferPointer) {
        guard let setup = data.first else { return }
        let parser = ReplyParser(
            structuredReplies: setup & 1 != 0, allocationContextID: setup & 2 != 0 ? 1 : nil,
            extendedHeaders: setup & 8 != 0, maximumMetadataChunk: 4096)
        var inFlight: [UInt64: ReplyProgress] = [
            1: ReplyProgress(request: RequestRecord(command: .read, offset: 0, length: 4096, flags: [])),
            2: ReplyProgress(request: RequestRecord(command: .read, offset: 8192, length: 512, flags: [])),
            3: ReplyProgress(
                request: RequestRecord(
                    command: .blockStatus, offset: 0, length: 65536, flags: setup & 4 != 0 ? .requestOne : [])),
            4: ReplyProgress(request: RequestRecord(command: .write, offset: 4096, length: 100, flags: .fua)),
            5: ReplyProgress(request: RequestRecord(command: .flush, offset: 0, length: 0, flags: [])),
            6: ReplyProgress(request: RequestRecord(command: .writeZeroes, offset: 0, length: 4096, flags: .noHole)),
            7: ReplyProgress(
                request: RequestRecord(command: .writeZeroes, offset: 4 << 30, length: 5 << 30, flags: [])),
            8: ReplyProgress(request: RequestRecord(command: .blockStatus, offset: 0, length: 6 << 30, flags: [])),
        ]
        var rest = UnsafeRawBufferPointer(rebasing: data[1...])
        while !rest.isEmpty {
            let outcome: ReplyParser.Outcome
            do {
                outcome = try parser.parse(rest) { inFlight[$0]?.request }
            } catch {
                precondition(error.code == .ioError && error.message.contains("protocol violation"))
                return
            }
            guard case .event(let event, let consumed, let payload) = outcome else { return }
            precondition(consumed > 0 && consumed <= rest.count, "an event consumed \(consumed) of \(rest.count) bytes")
            let request = inFlight[event.cookie]!.request
            switch event {
            case .data(_, let position, let count, _), .hole(_, let position, let count, _):
                precondition(UInt64(position + count) <= request.length, "a chunk outside its request")
                precondition(event.isData == (payload == count))
            case .blockStatus(_, let extents, _):
                precondition(extents.reduce(0) { $0 + $1.length } <= UInt64(request.length))
                precondition(!request.flags.contains(.requestOne) || extents.count == 1)
            case .simple(_, let error):
                precondition(payload == (error == 0 && request.command == .read ? Int(request.length) : 0))
            default:
                precondition(payload == 0)
            }
            guard consumed + payload <= rest.count else { return }
            rest = UnsafeRawBufferPointer(rebasing: rest[(consumed + payload)...])
            do {
                if try inFlight[event.cookie]!.accept(event) != nil {
                    inFlight[event.cookie] = nil
                }
            } catch {
                return
            }
        }
    }
}

extension ReplyEvent {
    fileprivate var isData: Bool {
        if case .data = self { return true }
        return false
    }
}
