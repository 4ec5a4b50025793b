import Foundation
import NBDCore
import XCTest

/// A pass-through that claims everything is a hole, to see what a filter above adds.
struct HoleFilter<Next: BlockBackend>: Filter {
    let next: Next
    func extents(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) -> [Extent] {
        [.hole(count)]
    }
}

/// A fresh directory for a test's temporary files.
enum TemporaryDirectory {
    static func make() throws -> String {
        let path = NSTemporaryDirectory() + "nbd-caching-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
