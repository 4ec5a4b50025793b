/// One transmission-phase request header: 28 bytes, big-endian.
package struct RequestHeader: Sendable {
    package var magic: UInt32
    package var flags: UInt16
    package var type: UInt16
    /// Opaque; echoed in the reply.
    package var cookie: UInt64
    package var offset: UInt64
    package var length: UInt32

    /// Parses the header at the start of `bytes` (at least 28 bytes). The cookie is copied as it is,
    /// byte for byte, so it is echoed unchanged whatever its endianness.
    package init(parsing bytes: UnsafeRawBufferPointer) {
        magic = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        flags = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        type = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        cookie = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        offset = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        length = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt32.self))
    }
}
