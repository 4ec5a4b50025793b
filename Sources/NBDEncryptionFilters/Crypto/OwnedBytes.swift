/// A buffer this module allocates for key material and scratch space, wiped before it is freed so
/// that keys do not linger in freed memory. Lets typed-throwing code work on bytes without
/// `Array.withUnsafeBytes`, whose closures cannot throw a typed error.
final class OwnedBytes {
    /// The buffer; valid until the object is released.
    let mutableBytes: UnsafeMutableRawBufferPointer

    /// `count` zero bytes.
    init(count: Int) {
        mutableBytes = .allocate(byteCount: max(count, 1), alignment: 16)
        mutableBytes.initializeMemory(as: UInt8.self, repeating: 0)
        if count == 0 {
            // An empty buffer still has an address (GnuTLS wants one for an empty passphrase).
            mutableBytesCount = 0
        } else {
            mutableBytesCount = count
        }
    }

    /// A copy of `array`.
    convenience init(_ array: [UInt8]) {
        self.init(count: array.count)
        for (index, byte) in array.enumerated() { mutableBytes[index] = byte }
    }

    private let mutableBytesCount: Int

    deinit {
        mutableBytes.initializeMemory(as: UInt8.self, repeating: 0)
        mutableBytes.deallocate()
    }

    /// The bytes in use (possibly zero of them, at a valid address).
    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: mutableBytes.baseAddress, count: mutableBytesCount)
    }

    /// The bytes in use, writable.
    var writable: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: mutableBytes.baseAddress, count: mutableBytesCount)
    }

    /// A copy of the bytes in use.
    var array: [UInt8] { Array(bytes) }
}
