import NBDServer

#if canImport(Glibc)
    import Glibc
#endif

/// Makes glibc give freed payload buffers back to the system, so that resident memory follows the
/// server's payload memory budget.
///
/// glibc serves allocations from 128 KiB up with `mmap` at first, but raises that threshold to the
/// size of each such block freed (up to 32 MiB), and trims an arena only when more than twice the
/// threshold is free at its top. After the first 8 MiB reply was freed, every later one came from a
/// per-thread arena, and each arena (8 per core) kept its freed megabytes: 16 clients with 8 MiB
/// reads under a 16 MiB budget took nbd-serve's peak resident memory up by 121 MiB instead of 17.
/// Setting the threshold explicitly stops that adjustment (`mallopt(3)`), which is what
/// `MALLOC_MMAP_THRESHOLD_` in the environment does too.
package enum MallocThreshold {
    /// `M_MMAP_THRESHOLD` from `<malloc.h>`, which the Glibc module does not export.
    private static let mmapThresholdOption: Int32 = -3

    /// glibc's default threshold, kept fixed.
    package static let bytes: Int32 = 128 << 10

    /// Fixes the threshold when `configuration` has a payload budget and the environment does not set
    /// it already. Returns whether it was set (`false` without glibc's `mallopt`, or under a sanitizer
    /// whose allocator refuses it).
    @discardableResult
    package static func apply(for configuration: ServerConfiguration) -> Bool {
        guard configuration.payloadMemoryBudget != nil, getenv("MALLOC_MMAP_THRESHOLD_") == nil,
            let address = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt")
        else { return false }
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        return unsafeBitCast(address, to: Mallopt.self)(mmapThresholdOption, bytes) == 1
    }
}
