import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// librados' and librbd's C functions, loaded with `dlopen` the first time an `rbd` export is
/// created, so that nothing links Ceph at build time: a machine without Ceph builds and tests the
/// rest of the package, and asking it for `rbd` fails at start with the package to install.
///
/// The declarations are those of `rados/librados.h` and `rbd/librbd.h` (Ceph 14 and later), written
/// here as `@convention(c)` function types. Handles (`rados_t`, `rados_ioctx_t`, `rbd_image_t`,
/// `rbd_completion_t`) are opaque pointers.
package final class Librbd: Sendable {
    package typealias Handle = OpaquePointer
    /// librbd's completion callback, `rbd_callback_t`.
    package typealias Callback = @convention(c) (Handle?, UnsafeMutableRawPointer?) -> Void

    let radosCreate: @convention(c) (UnsafeMutablePointer<Handle?>, UnsafePointer<CChar>?) -> Int32
    let radosConfReadFile: @convention(c) (Handle, UnsafePointer<CChar>?) -> Int32
    let radosConfSet: @convention(c) (Handle, UnsafePointer<CChar>, UnsafePointer<CChar>) -> Int32
    let radosConfGet: @convention(c) (Handle, UnsafePointer<CChar>, UnsafeMutablePointer<CChar>, Int) -> Int32
    let radosConnect: @convention(c) (Handle) -> Int32
    let radosShutdown: @convention(c) (Handle) -> Void
    /// `rados_wait_for_latest_osdmap`: fetches the newest OSD map from the monitors (blocks).
    let radosWaitForLatestOSDMap: (@convention(c) (Handle) -> Int32)?
    let radosIoctxCreate: @convention(c) (Handle, UnsafePointer<CChar>, UnsafeMutablePointer<Handle?>) -> Int32
    let radosIoctxDestroy: @convention(c) (Handle) -> Void
    let radosIoctxSetNamespace: @convention(c) (Handle, UnsafePointer<CChar>?) -> Void

    let open:
        @convention(c) (Handle, UnsafePointer<CChar>, UnsafeMutablePointer<Handle?>, UnsafePointer<CChar>?) -> Int32
    let openReadOnly:
        @convention(c) (Handle, UnsafePointer<CChar>, UnsafeMutablePointer<Handle?>, UnsafePointer<CChar>?) -> Int32
    let close: @convention(c) (Handle) -> Int32
    let getSize: @convention(c) (Handle, UnsafeMutablePointer<UInt64>) -> Int32
    let aioCreateCompletion: @convention(c) (UnsafeMutableRawPointer?, Callback, UnsafeMutablePointer<Handle?>) -> Int32
    let aioGetReturnValue: @convention(c) (Handle) -> Int
    let aioRelease: @convention(c) (Handle) -> Void
    let aioRead: @convention(c) (Handle, UInt64, Int, UnsafeMutableRawPointer, Handle) -> Int32
    let aioWrite: @convention(c) (Handle, UInt64, Int, UnsafeRawPointer, Handle) -> Int32
    let aioDiscard: @convention(c) (Handle, UInt64, UInt64, Handle) -> Int32
    let aioFlush: @convention(c) (Handle, Handle) -> Int32
    /// `rbd_diff_iterate2`'s callback: offset, length, whether the extent exists, the argument.
    package typealias DiffCallback = @convention(c) (UInt64, Int, Int32, UnsafeMutableRawPointer?) -> Int32
    let getFeatures: @convention(c) (Handle, UnsafeMutablePointer<UInt64>) -> Int32
    let getFlags: @convention(c) (Handle, UnsafeMutablePointer<UInt64>) -> Int32
    /// `rbd_diff_iterate2`, or `nil` where librbd lacks it (then no block status).
    let diffIterate2:
        (
            @convention(c) (
                Handle, UnsafePointer<CChar>?, UInt64, UInt64, UInt8, UInt8, DiffCallback, UnsafeMutableRawPointer?
            )
                -> Int32
        )?
    /// `rbd_aio_write_zeroes` (Ceph 16 and later), or `nil` where librbd lacks it.
    let aioWriteZeroes: (@convention(c) (Handle, UInt64, Int, Handle, Int32, Int32) -> Int32)?

    /// `RBD_FEATURE_FAST_DIFF`: the object map also says which objects changed, so a diff is cheap.
    static let featureFastDiff: UInt64 = 1 << 4
    /// `RBD_FLAG_OBJECT_MAP_INVALID` and `RBD_FLAG_FAST_DIFF_INVALID`: the map cannot be trusted.
    static let flagsMapInvalid: UInt64 = (1 << 0) | (1 << 1)

    /// `RBD_WRITE_ZEROES_FLAG_THICK_PROVISION`: zero by writing, never by deallocating.
    static let writeZeroesThickProvision: Int32 = 1

    /// The libraries, loaded at the first use; the error says which Debian package is missing.
    package static func load() throws(NBDError) -> Librbd {
        switch loaded {
        case .success(let library): return library
        case .failure(let error): throw error
        }
    }

    private static let loaded: Result<Librbd, NBDError> = {
        do {
            return .success(try Librbd())
        } catch let error as NBDError {
            return .failure(error)
        } catch {
            return .failure(NBDError(.notSupported, "rbd: \(error)"))
        }
    }()

    private init() throws(NBDError) {
        let rados = try Self.openLibrary("librados.so.2", package: "librados2")
        let rbd = try Self.openLibrary("librbd.so.1", package: "librbd1")
        radosCreate = try Self.symbol(rados, "rados_create")
        radosConfReadFile = try Self.symbol(rados, "rados_conf_read_file")
        radosConfSet = try Self.symbol(rados, "rados_conf_set")
        radosConfGet = try Self.symbol(rados, "rados_conf_get")
        radosConnect = try Self.symbol(rados, "rados_connect")
        radosShutdown = try Self.symbol(rados, "rados_shutdown")
        radosWaitForLatestOSDMap = try? Self.symbol(rados, "rados_wait_for_latest_osdmap")
        radosIoctxCreate = try Self.symbol(rados, "rados_ioctx_create")
        radosIoctxDestroy = try Self.symbol(rados, "rados_ioctx_destroy")
        radosIoctxSetNamespace = try Self.symbol(rados, "rados_ioctx_set_namespace")
        open = try Self.symbol(rbd, "rbd_open")
        openReadOnly = try Self.symbol(rbd, "rbd_open_read_only")
        close = try Self.symbol(rbd, "rbd_close")
        getSize = try Self.symbol(rbd, "rbd_get_size")
        aioCreateCompletion = try Self.symbol(rbd, "rbd_aio_create_completion")
        aioGetReturnValue = try Self.symbol(rbd, "rbd_aio_get_return_value")
        aioRelease = try Self.symbol(rbd, "rbd_aio_release")
        aioRead = try Self.symbol(rbd, "rbd_aio_read")
        aioWrite = try Self.symbol(rbd, "rbd_aio_write")
        aioDiscard = try Self.symbol(rbd, "rbd_aio_discard")
        aioFlush = try Self.symbol(rbd, "rbd_aio_flush")
        aioWriteZeroes = try? Self.symbol(rbd, "rbd_aio_write_zeroes")
        getFeatures = try Self.symbol(rbd, "rbd_get_features")
        getFlags = try Self.symbol(rbd, "rbd_get_flags")
        diffIterate2 = try? Self.symbol(rbd, "rbd_diff_iterate2")
    }

    /// The library handle of `name`; never closed (the function pointers live as long as the process).
    private static func openLibrary(_ name: String, package: String) throws(NBDError) -> UnsafeMutableRawPointer {
        if let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) { return handle }
        let reason = dlerror().map { String(cString: $0) } ?? "not found"
        throw NBDError(
            .notSupported,
            "rbd: cannot load \(name) (\(reason)): install the Debian package librbd1 (it brings \(package == "librbd1" ? "librados2" : package))"
        )
    }

    private static func symbol<T>(_ library: UnsafeMutableRawPointer, _ name: String) throws(NBDError) -> T {
        guard let address = dlsym(library, name) else {
            throw NBDError(
                .notSupported, "rbd: the installed librbd/librados lacks \(name); install librbd1 from Ceph 16 or later"
            )
        }
        return unsafeBitCast(address, to: T.self)
    }
}
