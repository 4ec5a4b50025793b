/// One transmission-phase request header, big-endian: 28 bytes in the compact form, 32 with
/// extended headers (whose length is 64 bits). The server parses it, the client stores it.
package struct RequestHeader: Sendable {
    package var magic: UInt32
    package var flags: UInt16
    package var type: UInt16
    /// Opaque; echoed in the reply.
    package var cookie: UInt64
    package var offset: UInt64
    /// The effect length (for a write, the payload size; with `NBD_CMD_FLAG_PAYLOAD_LEN` on a
    /// block-status request, the payload size). At most `UInt32.max` in the compact form.
    package var length: UInt64

    /// Parses the compact header at the start of `bytes` (at least 28 bytes). The cookie is copied
    /// as it is, byte for byte, so it is echoed unchanged whatever its endianness.
    package init(parsing bytes: UnsafeRawBufferPointer) {
        self.init(parsing: bytes, extended: false)
    }

    /// Parses the extended header at the start of `bytes` (at least 32 bytes).
    package init(parsingExtended bytes: UnsafeRawBufferPointer) {
        self.init(parsing: bytes, extended: true)
    }

    /// The two forms differ only in the length field at byte 24: 32 or 64 bits.
    private init(parsing bytes: UnsafeRawBufferPointer, extended: Bool) {
        magic = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        flags = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        type = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        cookie = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        offset = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        length =
            extended
            ? UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
            : UInt64(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt32.self)))
    }

    /// A request header; `extended` chooses the magic.
    package init(flags: UInt16, type: UInt16, cookie: UInt64, offset: UInt64, length: UInt64, extended: Bool = false) {
        self.magic = extended ? ProtocolConstants.extendedRequestMagic : ProtocolConstants.requestMagic
        self.flags = flags
        self.type = type
        self.cookie = cookie
        self.offset = offset
        self.length = length
    }

    /// Stores the compact header at the start of `bytes` (at least 28 bytes), big-endian. The
    /// length must fit in 32 bits (the caller checked; compact headers cannot say more).
    package func store(into bytes: UnsafeMutableRawBufferPointer) {
        precondition(length <= UInt64(UInt32.max), "a compact request header holds a 32-bit length")
        storeFieldsBeforeLength(into: bytes)
        bytes.storeBytes(of: UInt32(length).bigEndian, toByteOffset: 24, as: UInt32.self)
    }

    /// Stores the extended header at the start of `bytes` (at least 32 bytes), big-endian.
    package func storeExtended(into bytes: UnsafeMutableRawBufferPointer) {
        storeFieldsBeforeLength(into: bytes)
        bytes.storeBytes(of: length.bigEndian, toByteOffset: 24, as: UInt64.self)
    }

    /// Magic, flags, type, cookie and offset: the first 24 bytes, the same in both forms.
    private func storeFieldsBeforeLength(into bytes: UnsafeMutableRawBufferPointer) {
        bytes.storeBytes(of: magic.bigEndian, toByteOffset: 0, as: UInt32.self)
        bytes.storeBytes(of: flags.bigEndian, toByteOffset: 4, as: UInt16.self)
        bytes.storeBytes(of: type.bigEndian, toByteOffset: 6, as: UInt16.self)
        bytes.storeBytes(of: cookie.bigEndian, toByteOffset: 8, as: UInt64.self)
        bytes.storeBytes(of: offset.bigEndian, toByteOffset: 16, as: UInt64.self)
    }
}
