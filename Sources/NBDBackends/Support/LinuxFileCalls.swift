import Glibc

/// Linux file interfaces that Swift's Glibc module does not export, because glibc declares them only
/// under `_GNU_SOURCE` or in kernel headers the module map leaves out.
///
/// The functions are looked up with `dlsym` and called through `@convention(c)` types, which keeps
/// the C calling convention exact; a C shim target would work too, but the package has none.
enum LinuxFileCalls {
    /// `FALLOC_FL_KEEP_SIZE` from `<linux/falloc.h>`: do not change the file size.
    static let fallocKeepSize: Int32 = 0x01
    /// `FALLOC_FL_PUNCH_HOLE` from `<linux/falloc.h>`: deallocate the range (needs `KEEP_SIZE`).
    static let fallocPunchHole: Int32 = 0x02
    /// `FALLOC_FL_ZERO_RANGE` from `<linux/falloc.h>`: zero the range, keeping it allocated.
    static let fallocZeroRange: Int32 = 0x10

    /// `SEEK_DATA` from `<unistd.h>` (glibc, `_GNU_SOURCE`): the next offset holding data.
    static let seekData: Int32 = 3
    /// `SEEK_HOLE` from `<unistd.h>` (glibc, `_GNU_SOURCE`): the next offset in a hole.
    static let seekHole: Int32 = 4

    /// `RWF_DSYNC` from `<linux/fs.h>`: this write is durable (data and size) when it returns, as if
    /// the file were opened with `O_DSYNC`.
    static let rwfDSync: Int32 = 0x02

    typealias FallocateFunction = @convention(c) @Sendable (Int32, Int32, off_t, off_t) -> Int32
    typealias PWriteV2Function =
        @convention(c) @Sendable (Int32, UnsafePointer<iovec>?, Int32, off_t, Int32) -> Int

    /// `int fallocate(int fd, int mode, off_t offset, off_t len)` from `<fcntl.h>` (glibc ≥ 2.10).
    static let fallocate: FallocateFunction? = symbol("fallocate", as: FallocateFunction.self)

    /// `ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags)` from
    /// `<sys/uio.h>` (glibc ≥ 2.26). `nil` with an older glibc.
    static let pwritev2: PWriteV2Function? = symbol("pwritev2", as: PWriteV2Function.self)

    private static func symbol<Function>(_ name: String, as type: Function.Type) -> Function? {
        // A null handle is RTLD_DEFAULT in glibc: search the process's global symbols, libc included.
        guard let address = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
        return unsafeBitCast(address, to: type)
    }
}
