// libFuzzer target: arbitrary bytes as the start of a LUKS image go through the luks filter's header
// parser (and, when they parse, the anti-forensic merge). Built and run by Fuzz/run.sh.
@testable import NBDEncryptionFilters

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLUKSHeader(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    LUKSFuzzEntryPoints.header(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
