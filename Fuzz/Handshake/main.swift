// libFuzzer target: the bytes a client sends after the server's greeting (client flags and options)
// go through the real handshake. Built and run by Fuzz/run.sh.
@testable import NBDServer

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHandshake(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    FuzzEntryPoints.handshake(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
