import CExt2Shim
import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// libext2fs (e2fsprogs' filesystem library), opened with `dlopen` the first time an `ext2` filter
/// is configured, so that building this package needs no e2fsprogs headers and links nothing, and a
/// machine without the library runs every other filter.
///
/// Only the functions the filter calls are looked up; their C signatures are written here from
/// e2fsprogs' public `ext2fs.h` (`errcode_t` is a C `long`, `ext2_ino_t` a 32-bit number, `blk64_t`
/// and `__u64` 64-bit). None of these functions is thread-safe for one filesystem: ``Ext2Filesystem``
/// calls them from one serial queue.
package final class LibExt2fs: Sendable {
    /// The shared object name of libext2fs' current ABI, as Debian's `libext2fs2` package installs it.
    static let libraryName = "libext2fs.so.2"

    typealias Open =
        @convention(c) (
            UnsafePointer<CChar>?, Int32, Int32, UInt32, UnsafeMutableRawPointer?, UnsafeMutablePointer<OpaquePointer?>?
        ) -> Int
    typealias Close = @convention(c) (OpaquePointer?) -> Int
    typealias Namei =
        @convention(c) (OpaquePointer?, UInt32, UInt32, UnsafePointer<CChar>?, UnsafeMutablePointer<UInt32>?) -> Int
    typealias ReadInode = @convention(c) (OpaquePointer?, UInt32, UnsafeMutableRawPointer?) -> Int
    typealias BlockMap =
        @convention(c) (
            OpaquePointer?, UInt32, UnsafeMutableRawPointer?, UnsafeMutablePointer<CChar>?, Int32, UInt64,
            UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<UInt64>?
        ) -> Int
    typealias FileOpen = @convention(c) (OpaquePointer?, UInt32, Int32, UnsafeMutablePointer<OpaquePointer?>?) -> Int
    typealias FileWrite =
        @convention(c) (OpaquePointer?, UnsafeRawPointer?, UInt32, UnsafeMutablePointer<UInt32>?) -> Int
    typealias FileSeek = @convention(c) (OpaquePointer?, UInt64, Int32, UnsafeMutablePointer<UInt64>?) -> Int
    typealias FileSize = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt64>?) -> Int
    typealias ErrorMessage = @convention(c) (Int) -> UnsafePointer<CChar>?
    typealias ExtentOpen =
        @convention(c) (OpaquePointer?, UInt32, UnsafeMutableRawPointer?, UnsafeMutablePointer<OpaquePointer?>?) -> Int
    typealias ExtentGet = @convention(c) (OpaquePointer?, Int32, UnsafeMutablePointer<cext2_extent>?) -> Int
    typealias ExtentFree = @convention(c) (OpaquePointer?) -> Void

    // ext2fs.h's flags and constants the filter uses.
    static let openReadWrite: Int32 = 0x01
    static let open64Bit: Int32 = 0x20000
    static let fileWrite: Int32 = 0x0001
    static let seekSet: Int32 = 0
    static let rootInode: UInt32 = 2
    /// ext2fs_bmap2's `ret_flags` bit for a block of an unwritten (preallocated) extent, which reads as zeroes.
    static let mappedUnwritten: Int32 = 0x0001
    /// com_err codes of lib/ext2fs/ext2_err.et.in (the table's base plus the code's index).
    static let errorBase = 2_133_571_328
    static let errorBadMagic = errorBase + 19
    static let errorShortRead = errorBase + 36
    static let errorCorruptSuperblock = errorBase + 60
    static let errorUnsupportedFeature = errorBase + 67
    static let errorNoDirectory = errorBase + 74
    static let errorFileNotFound = errorBase + 76
    static let errorExtentNoNext = errorBase + 124
    /// ext2fs_extent_get's operations: the first entry of the root, then the next in a depth-first walk.
    static let extentRoot: Int32 = 0x0001
    static let extentNext: Int32 = 0x0009
    static let extentLeaf: UInt32 = 0x0001
    static let extentUnwritten: UInt32 = 0x0002
    /// The inode flag (i_flags, at offset 32 of struct ext2_inode) of an extent-mapped file.
    static let inodeExtents: UInt32 = 0x0008_0000

    // The addresses stay valid for the life of the process: the library is never closed.
    nonisolated(unsafe) let open: Open
    nonisolated(unsafe) let close: Close
    nonisolated(unsafe) let flush: Close
    nonisolated(unsafe) let namei: Namei
    nonisolated(unsafe) let readInode: ReadInode
    nonisolated(unsafe) let blockMap: BlockMap
    nonisolated(unsafe) let fileOpen: FileOpen
    nonisolated(unsafe) let fileClose: Close
    nonisolated(unsafe) let fileFlush: Close
    nonisolated(unsafe) let fileWrite: FileWrite
    nonisolated(unsafe) let fileSeek: FileSeek
    nonisolated(unsafe) let fileSize: FileSize
    nonisolated(unsafe) let errorMessage: ErrorMessage
    nonisolated(unsafe) let extentOpen: ExtentOpen
    nonisolated(unsafe) let extentGet: ExtentGet
    nonisolated(unsafe) let extentFree: ExtentFree

    /// libext2fs from the system, loaded once; the error names the package to install when it is missing.
    static let shared: Result<LibExt2fs, NBDError> = Result { () throws(NBDError) in try LibExt2fs(path: libraryName) }

    /// Loads libext2fs from `path` (a name the dynamic loader searches for, or a path).
    package init(path: String) throws(NBDError) {
        guard let library = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "not found"
            throw NBDError(
                .notSupported,
                "ext2: cannot load libext2fs (\(path)): \(reason); install the Debian package libext2fs2 (apt-get install libext2fs2)"
            )
        }
        func symbol(_ name: String) throws(NBDError) -> UnsafeMutableRawPointer {
            // error_message lives in libcom_err, which libext2fs depends on: dlsym searches it too.
            guard let address = dlsym(library, name) else {
                throw NBDError(
                    .notSupported, "ext2: \(path) has no \(name); e2fsprogs' libext2fs 1.42 or later is needed")
            }
            return address
        }
        open = unsafeBitCast(try symbol("ext2fs_open"), to: Open.self)
        close = unsafeBitCast(try symbol("ext2fs_close"), to: Close.self)
        flush = unsafeBitCast(try symbol("ext2fs_flush"), to: Close.self)
        namei = unsafeBitCast(try symbol("ext2fs_namei"), to: Namei.self)
        readInode = unsafeBitCast(try symbol("ext2fs_read_inode"), to: ReadInode.self)
        blockMap = unsafeBitCast(try symbol("ext2fs_bmap2"), to: BlockMap.self)
        fileOpen = unsafeBitCast(try symbol("ext2fs_file_open"), to: FileOpen.self)
        fileClose = unsafeBitCast(try symbol("ext2fs_file_close"), to: Close.self)
        fileFlush = unsafeBitCast(try symbol("ext2fs_file_flush"), to: Close.self)
        fileWrite = unsafeBitCast(try symbol("ext2fs_file_write"), to: FileWrite.self)
        fileSeek = unsafeBitCast(try symbol("ext2fs_file_llseek"), to: FileSeek.self)
        fileSize = unsafeBitCast(try symbol("ext2fs_file_get_lsize"), to: FileSize.self)
        errorMessage = unsafeBitCast(try symbol("error_message"), to: ErrorMessage.self)
        extentOpen = unsafeBitCast(try symbol("ext2fs_extent_open2"), to: ExtentOpen.self)
        extentGet = unsafeBitCast(try symbol("ext2fs_extent_get"), to: ExtentGet.self)
        extentFree = unsafeBitCast(try symbol("ext2fs_extent_free"), to: ExtentFree.self)
        // Programs register libext2fs' com_err table themselves; without it error_message prints
        // "Unknown code ext2 76" instead of "Ext2 file not found". `shared` runs this once.
        let registerErrors = unsafeBitCast(
            try symbol("initialize_ext2_error_table"), to: (@convention(c) () -> Void).self)
        registerErrors()
    }

    /// com_err's text for a libext2fs error code (errno values read as strerror's text).
    func message(_ code: Int) -> String {
        errorMessage(code).map { String(cString: $0) } ?? "error \(code)"
    }
}
