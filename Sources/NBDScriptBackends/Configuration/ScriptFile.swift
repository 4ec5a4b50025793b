import Foundation
import Glibc
import NBDCore

/// Writing the scripts nbd-serve runs into `$tmpdir`: eval's snippets and sh's inline script.
enum ScriptFile {
    /// Writes `text` to `path`, ending it with a newline, readable and runnable only by us (0500),
    /// as nbdkit writes them.
    static func write(_ text: String, to path: String) throws(NBDError) {
        var contents = text
        if !contents.isEmpty && !contents.hasSuffix("\n") { contents += "\n" }
        guard FileManager.default.createFile(atPath: path, contents: Data(contents.utf8)) else {
            throw NBDError(.ioError, "cannot write \(path)")
        }
        guard chmod(path, 0o500) == 0 else { throw NBDError(errno: errno, "cannot make \(path) executable") }
    }

    /// The absolute path of an existing executable, or an error for `parameter` that says what
    /// is wrong.
    static func executable(_ path: String, parameter: String) throws(NBDError) -> String {
        guard let resolved = realpath(path, nil) else {
            throw NBDError(errno: errno, "\(parameter)=\(path): cannot find the script")
        }
        defer { free(resolved) }
        let absolute = String(cString: resolved)
        var info = stat()
        guard stat(absolute, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw NBDError(.invalidArgument, "\(parameter)=\(path): not a regular file")
        }
        guard access(absolute, X_OK) == 0 else {
            throw NBDError(.invalidArgument, "\(parameter)=\(path): the script is not executable; run chmod +x \(path)")
        }
        return absolute
    }

    /// Reads standard input to its end (sh's `-`), on a thread of its own.
    static func readStandardInput(parameter: String) async throws(NBDError) -> String {
        var info = stat()
        if fstat(0, &info) == 0 && info.st_mode & S_IFMT == S_IFSOCK {
            throw NBDError(
                .invalidArgument,
                "\(parameter)=-: standard input is a socket (the client's, with -s?), not a script; give the script as a file"
            )
        }
        let bytes: [UInt8] = await BlockingThread.run {
            var data: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                let count = chunk.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, $0.count) }
                if count > 0 {
                    data.append(contentsOf: chunk[0..<count])
                } else if count < 0 && errno == EINTR {
                    continue
                } else {
                    return data
                }
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
