/// Calls `receive` with a 64 KiB buffer until `count` bytes have arrived, or it reports the end (0)
/// or an error (a negative count), and returns what arrived. For a peer's side of a test, usually
/// run in a ``ThreadResult``.
public func receiveAll(_ count: Int, using receive: (UnsafeMutableRawBufferPointer) -> Int) -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: 65536)
    var all: [UInt8] = []
    while all.count < count {
        let received = buffer.withUnsafeMutableBytes { receive($0) }
        if received <= 0 { break }
        all += buffer[0..<received]
    }
    return all
}
