import NBDCore

/// A read-only export of bytes held in memory: the qcow2 file the fuzz target and the tests feed to
/// the decoder. Reads outside the bytes fail with `EIO`, as a layer below that shrank would.
package struct BytesBackend: BlockBackend {
    package let bytes: [UInt8]
    package var capabilities: Capabilities { Capabilities(size: UInt64(bytes.count), isWritable: false) }

    /// An export of `bytes`.
    package init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    package func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags)
        async throws(NBDError)
    {
        guard offset <= UInt64(bytes.count), UInt64(buffer.count) <= UInt64(bytes.count) - offset else {
            throw NBDError(.ioError, "read of \(buffer.count) bytes at \(offset) past the end (\(bytes.count) bytes)")
        }
        bytes.withUnsafeBytes { source in
            buffer.copyMemory(
                from: UnsafeRawBufferPointer(rebasing: source[Int(offset)..<(Int(offset) + buffer.count)]))
        }
    }

    package func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "read-only")
    }

    package func zero(count: UInt64, at offset: UInt64, flags: CommandFlags) async throws(NBDError) {
        throw NBDError(.notPermitted, "read-only")
    }
}
