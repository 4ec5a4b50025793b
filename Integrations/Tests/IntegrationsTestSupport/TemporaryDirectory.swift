import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// A private directory for one test's Unix sockets, removed with everything in it.
package struct TemporaryDirectory {
    package let path: String

    package init() throws {
        var template = Array("/tmp/nbd-integrations-tests.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestSetupError("mkdtemp could not create a directory in /tmp (errno \(errno))")
        }
        path = String(cString: made)
    }

    package func socket(_ name: String = "nbd.sock") -> String { path + "/" + name }

    package func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Whether a file exists at `path` (a Unix socket's file disappears when the server stops listening).
package func fileExists(_ path: String) -> Bool {
    access(path, F_OK) == 0
}

/// A test's set-up failed (not the behaviour under test).
package struct TestSetupError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
