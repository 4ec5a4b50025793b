// libFuzzer target: bytes an NBD server sends in transmission (simple replies and structured chunks)
// go through the client's reply parser with requests in flight. Built and run by Fuzz/run.sh.
@testable import NBDClient

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzClientReplies(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    ClientFuzzEntryPoints.replies(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
