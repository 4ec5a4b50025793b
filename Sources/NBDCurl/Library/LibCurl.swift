import CCurlShim
import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// libcurl, opened with `dlopen` the first time the `curl` backend is used, so that building this
/// package needs no libcurl headers and links no libcurl, and a machine without it can still run
/// every other backend.
///
/// Only the functions NBDCurl calls are looked up. The variadic `curl_easy_setopt` and
/// `curl_easy_getinfo` are called through CCurlShim's trampolines, which pass each argument with
/// the C type libcurl reads for that option.
package final class LibCurl: Sendable {
    /// The shared object name of libcurl's current ABI, as Debian's `libcurl4` package installs it.
    package static let libraryName = "libcurl.so.4"

    typealias GlobalInit = @convention(c) (Int) -> Int32
    typealias EasyInit = @convention(c) () -> UnsafeMutableRawPointer?
    typealias EasyCleanup = @convention(c) (UnsafeMutableRawPointer?) -> Void
    typealias EasyStrerror = @convention(c) (Int32) -> UnsafePointer<CChar>?
    typealias SlistAppend = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> OpaquePointer?
    typealias SlistFreeAll = @convention(c) (OpaquePointer?) -> Void
    typealias MultiInit = @convention(c) () -> UnsafeMutableRawPointer?
    typealias MultiCleanup = @convention(c) (UnsafeMutableRawPointer?) -> Int32
    typealias MultiHandleCall = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32
    typealias MultiPerform = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> Int32
    typealias MultiPoll =
        @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UInt32, Int32, UnsafeMutablePointer<Int32>?)
        -> Int32
    typealias MultiWakeup = @convention(c) (UnsafeMutableRawPointer?) -> Int32
    typealias MultiInfoRead =
        @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> UnsafeMutablePointer<
            ccurl_multi_message
        >?
    typealias MultiStrerror = @convention(c) (Int32) -> UnsafePointer<CChar>?

    // The addresses stay valid for the life of the process: the library is never closed.
    nonisolated(unsafe) let easyInit: EasyInit
    nonisolated(unsafe) let easyCleanup: EasyCleanup
    nonisolated(unsafe) let easyStrerror: EasyStrerror
    nonisolated(unsafe) let slistAppend: SlistAppend
    nonisolated(unsafe) let slistFreeAll: SlistFreeAll
    nonisolated(unsafe) let setoptAddress: UnsafeMutableRawPointer
    // The multi interface (libcurl 7.68 or later for curl_multi_poll and curl_multi_wakeup).
    nonisolated(unsafe) let multiInit: MultiInit
    nonisolated(unsafe) let multiCleanup: MultiCleanup
    nonisolated(unsafe) let multiAddHandle: MultiHandleCall
    nonisolated(unsafe) let multiRemoveHandle: MultiHandleCall
    nonisolated(unsafe) let multiPerform: MultiPerform
    nonisolated(unsafe) let multiPoll: MultiPoll
    nonisolated(unsafe) let multiWakeup: MultiWakeup
    nonisolated(unsafe) let multiInfoRead: MultiInfoRead
    nonisolated(unsafe) let multiStrerror: MultiStrerror
    nonisolated(unsafe) let multiSetoptAddress: UnsafeMutableRawPointer
    nonisolated(unsafe) let getinfoAddress: UnsafeMutableRawPointer

    /// libcurl from the system, loaded once; the error says which package to install when it is missing.
    package static let shared: Result<LibCurl, NBDError> = Result { () throws(NBDError) in
        try LibCurl(path: libraryName)
    }

    /// Loads libcurl from `path` (a name the dynamic loader searches for, or a path) and initializes it.
    package init(path: String) throws(NBDError) {
        guard let library = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "not found"
            throw NBDError(
                .notSupported,
                "curl: cannot load libcurl (\(path)): \(reason); install the Debian package libcurl4 (apt-get install libcurl4)"
            )
        }
        func symbol(_ name: String) throws(NBDError) -> UnsafeMutableRawPointer {
            guard let address = dlsym(library, name) else {
                throw NBDError(.notSupported, "curl: \(path) has no \(name); libcurl 7.85 or later is needed")
            }
            return address
        }
        let globalInit = unsafeBitCast(try symbol("curl_global_init"), to: GlobalInit.self)
        easyInit = unsafeBitCast(try symbol("curl_easy_init"), to: EasyInit.self)
        easyCleanup = unsafeBitCast(try symbol("curl_easy_cleanup"), to: EasyCleanup.self)
        easyStrerror = unsafeBitCast(try symbol("curl_easy_strerror"), to: EasyStrerror.self)
        slistAppend = unsafeBitCast(try symbol("curl_slist_append"), to: SlistAppend.self)
        slistFreeAll = unsafeBitCast(try symbol("curl_slist_free_all"), to: SlistFreeAll.self)
        setoptAddress = try symbol("curl_easy_setopt")
        getinfoAddress = try symbol("curl_easy_getinfo")
        multiInit = unsafeBitCast(try symbol("curl_multi_init"), to: MultiInit.self)
        multiCleanup = unsafeBitCast(try symbol("curl_multi_cleanup"), to: MultiCleanup.self)
        multiAddHandle = unsafeBitCast(try symbol("curl_multi_add_handle"), to: MultiHandleCall.self)
        multiRemoveHandle = unsafeBitCast(try symbol("curl_multi_remove_handle"), to: MultiHandleCall.self)
        multiPerform = unsafeBitCast(try symbol("curl_multi_perform"), to: MultiPerform.self)
        multiPoll = unsafeBitCast(try symbol("curl_multi_poll"), to: MultiPoll.self)
        multiWakeup = unsafeBitCast(try symbol("curl_multi_wakeup"), to: MultiWakeup.self)
        multiInfoRead = unsafeBitCast(try symbol("curl_multi_info_read"), to: MultiInfoRead.self)
        multiStrerror = unsafeBitCast(try symbol("curl_multi_strerror"), to: MultiStrerror.self)
        multiSetoptAddress = try symbol("curl_multi_setopt")
        // curl_global_init is not thread-safe; `shared` runs this initializer once (Swift's lazy
        // static initialization is), before any handle exists. CURL_GLOBAL_DEFAULT is 3.
        let status = globalInit(3)
        guard status == 0 else {
            throw NBDError(.ioError, "curl: curl_global_init failed: \(Self.message(easyStrerror, status))")
        }
    }

    /// libcurl's description of a `CURLcode`.
    func message(_ code: Int32) -> String { Self.message(easyStrerror, code) }

    private static func message(_ strerror: EasyStrerror, _ code: Int32) -> String {
        strerror(code).map { String(cString: $0) } ?? "error \(code)"
    }

    /// libcurl's description of a `CURLMcode`.
    func multiMessage(_ code: Int32) -> String {
        multiStrerror(code).map { String(cString: $0) } ?? "multi error \(code)"
    }

    /// Sets a long option of a multi handle (`CURLMOPT_*`).
    func multiSetopt(_ multi: UnsafeMutableRawPointer, _ option: Int32, long value: Int) -> Int32 {
        ccurl_multi_setopt_long(multiSetoptAddress, multi, option, value)
    }

    func setopt(_ handle: UnsafeMutableRawPointer, _ option: CurlOption, long value: Int) -> Int32 {
        ccurl_setopt_long(setoptAddress, handle, option.rawValue, value)
    }

    func setopt(_ handle: UnsafeMutableRawPointer, _ option: CurlOption, pointer value: UnsafeRawPointer?) -> Int32 {
        ccurl_setopt_pointer(setoptAddress, handle, option.rawValue, value)
    }

    func setopt(_ handle: UnsafeMutableRawPointer, _ option: CurlOption, offset value: Int64) -> Int32 {
        ccurl_setopt_off(setoptAddress, handle, option.rawValue, value)
    }

    func setopt(_ handle: UnsafeMutableRawPointer, _ option: CurlOption, callback value: ccurl_data_callback) -> Int32 {
        ccurl_setopt_callback(setoptAddress, handle, option.rawValue, value)
    }

    func setopt(_ handle: UnsafeMutableRawPointer, _ option: CurlOption, debugCallback value: ccurl_debug_callback)
        -> Int32
    {
        ccurl_setopt_debug_callback(setoptAddress, handle, option.rawValue, value)
    }

    func getinfoLong(_ handle: UnsafeMutableRawPointer, _ info: Int32) -> Int? {
        var value = 0
        return ccurl_getinfo_long(getinfoAddress, handle, info, &value) == 0 ? value : nil
    }

    func getinfoOffset(_ handle: UnsafeMutableRawPointer, _ info: Int32) -> Int64? {
        var value: Int64 = 0
        return ccurl_getinfo_off(getinfoAddress, handle, info, &value) == 0 ? value : nil
    }
}
