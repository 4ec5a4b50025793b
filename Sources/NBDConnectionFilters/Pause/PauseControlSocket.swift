import Dispatch
import Foundation
import NBDCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The pause filter's control socket: a Unix-domain socket on which a client sends `p` to pause
/// (answered `P` once the requests already running have finished), `r` to resume (answered `R`),
/// and anything else, answered `X`. One control client is served at a time, on a thread of its own.
public final class PauseControlSocket: Sendable {
    /// The socket's path.
    public let path: String
    private let gate: PauseGate
    private let listener: Int32
    private let stopped = Atomic<Bool>(false)

    /// Binds `path` and starts serving control clients.
    ///
    /// - Throws: `NBDError` (`EINVAL`) naming `pause-control` when the socket cannot be made.
    public init(path: String, gate: PauseGate) throws(NBDError) {
        self.path = path
        self.gate = gate
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else {
            throw NBDError(.invalidArgument, "pause-control=\(path): the path is longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
        }
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else {
            throw NBDError(
                .invalidArgument, "pause-control=\(path): cannot create a socket: \(String(cString: strerror(errno)))")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(descriptor, 4) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw NBDError(.invalidArgument, "pause-control=\(path): cannot listen on the socket: \(reason)")
        }
        listener = descriptor
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "nbd-pause-control"
        thread.start()
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .acquiring) {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                break
            }
            serve(client)
            close(client)
        }
        close(listener)
    }

    private func serve(_ client: Int32) {
        var byte: UInt8 = 0
        while !stopped.load(ordering: .acquiring), recv(client, &byte, 1, 0) == 1 {
            let answer: UInt8
            switch byte {
            case UInt8(ascii: "p"):
                // Answer only once the requests received before the pause have finished.
                let idle = DispatchSemaphore(value: 0)
                gate.pause { idle.signal() }
                idle.wait()
                answer = UInt8(ascii: "P")
            case UInt8(ascii: "r"):
                gate.resume()
                answer = UInt8(ascii: "R")
            default:
                answer = UInt8(ascii: "X")
            }
            var reply = answer
            guard send(client, &reply, 1, Int32(MSG_NOSIGNAL)) == 1 else { return }
        }
    }

    /// Stops serving, removes the socket file and lets held requests go.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        unlink(path)
        // Wakes a blocked accept; the loop then closes the descriptor.
        _ = Glibc.shutdown(listener, Int32(SHUT_RDWR))
        gate.resume()
    }
}
