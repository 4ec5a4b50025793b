import Foundation
import NBDCore
import NBDTestSupport

/// A compressed file held by an in-memory backend, as the layer below a decompressing filter.
enum CompressedImage {
    /// A backend serving `bytes`.
    static func backend(_ bytes: [UInt8]) async throws -> AnyBlockBackend {
        let backend = TestMemoryBackend(size: UInt64(bytes.count))
        if !bytes.isEmpty { try await backend.writeBytes(bytes, at: 0) }
        return AnyBlockBackend(backend)
    }

    /// A backend serving the file at `url`.
    static func backend(_ url: URL) async throws -> AnyBlockBackend {
        try await backend(Array(try Data(contentsOf: url)))
    }
}
