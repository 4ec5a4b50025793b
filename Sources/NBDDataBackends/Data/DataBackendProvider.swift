import Foundation
import NBDBackends
import NBDCore

/// nbdkit's `data` plugin: an export whose contents are written on the command line, in nbdkit's
/// data format (`data`), as raw text (`raw`) or as base64 (`base64`), truncated or padded with
/// zeroes to `size` when it is given.
///
/// The export is a sparse RAM disk (`MemoryBackendProvider`) that starts with the data: it is
/// writable and shared by every connection, and writes are lost when the process ends.
///
/// ```swift
/// let export = try DataBackendProvider(data: "( 0x55 0xAA )*256 @^4096", size: nil)
/// ```
public struct DataBackendProvider: BackendProvider {
    public typealias Backend = MemoryBackend

    let memory: MemoryBackendProvider

    /// Creates an export from a data-format string.
    ///
    /// - Parameters:
    ///   - data: the string, in nbdkit's data format.
    ///   - size: the export size, or `nil` for the size the data reaches.
    ///   - variable: where `$VAR` is looked up; by default the environment.
    /// - Throws: `NBDError.Code.invalidArgument` naming what is wrong in the string.
    public init(
        data: String, size: UInt64? = nil,
        variable: @escaping (String) -> String? = { ProcessInfo.processInfo.environment[$0] }
    ) async throws(NBDError) {
        let image = try DataEvaluator.evaluate(try DataFormatParser.parse(data, variable: variable))
        try await self.init(image: image, size: size)
    }

    /// Creates an export holding `bytes` (nbdkit's `raw=` and `base64=`).
    public init(bytes: [UInt8], size: UInt64? = nil) async throws(NBDError) {
        var image = DataImage()
        try image.store(.bytes(bytes[...]), at: 0)
        image.size = UInt64(bytes.count)
        try await self.init(image: image, size: size)
    }

    init(image: DataImage, size: UInt64?) async throws(NBDError) {
        let exportSize = size ?? image.size
        memory = try MemoryBackendProvider(size: exportSize)
        let writer = try await memory.open(ConnectionInfo())
        // `withUnsafeBytes` cannot span an `await`: stage each run in a buffer owned here.
        let chunkSize: UInt64 = 1 << 20
        let staging = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(chunkSize), alignment: 16)
        defer { staging.deallocate() }
        for run in image.runs where run.start < exportSize {
            let length = min(run.content.length, exportSize - run.start)
            var done: UInt64 = 0
            if case .fill(let byte, _) = run.content {
                staging.initializeMemory(as: UInt8.self, repeating: byte)
            }
            while done < length {
                let part = Int(min(chunkSize, length - done))
                if case .bytes(let bytes) = run.content {
                    let from = bytes.startIndex + Int(done)
                    staging.copyBytes(from: bytes[from..<from + part])
                }
                try await writer.write(
                    UnsafeRawBufferPointer(rebasing: staging[0..<part]), at: run.start + done, flags: [])
                done += UInt64(part)
            }
        }
        await writer.close()
    }

    /// The export size in bytes.
    public var size: UInt64 { memory.size }

    /// Opens a connection's view of the shared memory; read-only connections get read-only capabilities.
    public func open(_ connection: ConnectionInfo) async throws(NBDError) -> MemoryBackend {
        try await memory.open(connection)
    }
}
