// libFuzzer target: a whole connection (a canned or fuzzed handshake, then requests) goes through
// the real request loop; the first two bytes pick the set-up (see FuzzEntryPoints.connection).
// Built and run by Fuzz/run.sh.
@testable import NBDServer

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConnection(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    FuzzEntryPoints.connection(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
