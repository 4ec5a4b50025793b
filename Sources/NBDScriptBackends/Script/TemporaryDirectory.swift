import Foundation
import Glibc
import NBDCore
import Synchronization

/// `$tmpdir`: a private directory created empty at start and removed, with everything in it, at
/// shutdown, or when the last reference goes away after a start that failed.
package final class TemporaryDirectory: Sendable {
    /// The directory's absolute path.
    package let path: String
    private let removed = LockedValue(false)

    /// Creates an empty directory `PREFIXxxxxxx` under `$TMPDIR` (or `/tmp`), readable only by us.
    package init(prefix: String) throws(NBDError) {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/\(prefix)XXXXXX".utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw NBDError(errno: errno, "cannot create a temporary directory in \(base)")
        }
        path = String(cString: created)
    }

    /// Whether ``remove()`` ran.
    package var isRemoved: Bool { removed.withLock { $0 } }

    /// Removes the directory and its contents; errors are ignored, as nbdkit ignores them. Only
    /// the first call does anything.
    package func remove() {
        let first = removed.withLock { done in
            defer { done = true }
            return !done
        }
        if first { try? FileManager.default.removeItem(atPath: path) }
    }

    deinit {
        remove()
    }
}
