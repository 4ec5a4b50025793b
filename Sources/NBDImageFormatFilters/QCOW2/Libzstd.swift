import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

/// The four functions of libzstd that zstd-compressed qcow2 clusters need, loaded with `dlopen`
/// the first time an image compressed with zstd is opened, so that nothing links libzstd at build
/// time. The declarations are those of `zstd.h` (1.3 and later), written as `@convention(c)` types.
final class Libzstd: Sendable {
    /// `ZSTD_decompress(dst, dstCapacity, src, srcSize)`: the decompressed size, or an error code.
    private let decompressFrames: @convention(c) (UnsafeMutableRawPointer?, Int, UnsafeRawPointer?, Int) -> Int
    /// `ZSTD_findFrameCompressedSize(src, srcSize)`: how many bytes the first frame takes, or an error code.
    private let frameSize: @convention(c) (UnsafeRawPointer?, Int) -> Int
    /// `ZSTD_isError(code)`.
    private let isError: @convention(c) (Int) -> UInt32
    /// `ZSTD_getErrorName(code)`.
    private let errorName: @convention(c) (Int) -> UnsafePointer<CChar>?

    /// The library, loaded once; the error names the Debian package to install.
    static let shared: Result<Libzstd, NBDError> = load("libzstd.so.1")

    /// Loads `name` (a parameter so that tests can ask for a library that does not exist).
    static func load(_ name: String) -> Result<Libzstd, NBDError> {
        do throws(NBDError) {
            return .success(try Libzstd(name))
        } catch {
            return .failure(error)
        }
    }

    private init(_ name: String) throws(NBDError) {
        guard let library = dlopen(name, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "not found"
            throw NBDError(
                .notSupported,
                "qcow2dec: the image is compressed with zstd, and \(name) cannot be loaded (\(reason)): install the Debian package libzstd1"
            )
        }
        decompressFrames = try Self.symbol(library, "ZSTD_decompress")
        frameSize = try Self.symbol(library, "ZSTD_findFrameCompressedSize")
        isError = try Self.symbol(library, "ZSTD_isError")
        errorName = try Self.symbol(library, "ZSTD_getErrorName")
    }

    private static func symbol<T>(_ library: UnsafeMutableRawPointer, _ name: String) throws(NBDError) -> T {
        guard let address = dlsym(library, name) else {
            throw NBDError(
                .notSupported, "qcow2dec: the installed libzstd lacks \(name); install libzstd1 1.3 or later")
        }
        return unsafeBitCast(address, to: T.self)
    }

    /// Decompresses the zstd frame at the start of `input` (padding may follow it) into `output`,
    /// which it must fill exactly.
    func decompress(
        _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, hostOffset: UInt64
    ) throws(NBDError) {
        func failure(_ reason: String) -> NBDError {
            NBDError(
                .ioError,
                "qcow2dec: the image is corrupt: the zstd-compressed cluster at offset \(hostOffset) does not decompress: \(reason)"
            )
        }
        func name(_ code: Int) -> String { errorName(code).map { String(cString: $0) } ?? "error \(code)" }
        let frame = frameSize(input.baseAddress, input.count)
        guard isError(frame) == 0 else { throw failure(name(frame)) }
        let produced = decompressFrames(output.baseAddress, output.count, input.baseAddress, frame)
        guard isError(produced) == 0 else { throw failure(name(produced)) }
        guard produced == output.count else { throw failure("it holds \(produced) bytes, not \(output.count)") }
    }
}
