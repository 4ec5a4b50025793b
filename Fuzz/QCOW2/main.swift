// libFuzzer target: arbitrary bytes opened as a qcow2 file by the qcow2dec filter's decoder (header,
// L1 and L2 tables), then a few reads and block status requests through it. Built and run by Fuzz/run.sh.
@testable import NBDImageFormatFilters

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQCOW2(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    QCOW2FuzzEntryPoints.image(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
