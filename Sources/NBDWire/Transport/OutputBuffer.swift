/// A growable byte buffer for outgoing messages, reused for the life of a connection so that the hot
/// path does not allocate. Big-endian helpers write the NBD wire format.
package struct OutputBuffer: ~Copyable {
    package private(set) var storage: UnsafeMutableRawBufferPointer
    /// The number of bytes written.
    package private(set) var count = 0

    package init(capacity: Int) {
        storage = .allocate(byteCount: max(capacity, 64), alignment: 16)
    }

    deinit {
        storage.deallocate()
    }

    /// The bytes written so far, valid until the next mutating call.
    package var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage[0..<count])
    }

    package var isEmpty: Bool { count == 0 }

    package mutating func removeAll() {
        count = 0
    }

    /// Drops everything after the first `length` bytes (undoes a reply that failed half-way).
    package mutating func truncate(to length: Int) {
        precondition(length <= count)
        count = length
    }

    /// Appends `length` uninitialized bytes and returns them for the caller to fill. The pointer is
    /// valid until the next mutating call.
    package mutating func append(uninitialized length: Int) -> UnsafeMutableRawBufferPointer {
        reserve(length)
        let region = UnsafeMutableRawBufferPointer(rebasing: storage[count..<(count + length)])
        count += length
        return region
    }

    package mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count)
        (storage.baseAddress! + count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
    }

    package mutating func append(_ value: UInt8) {
        reserve(1)
        storage[count] = value
        count += 1
    }

    package mutating func append(_ value: UInt16) {
        reserve(2)
        storage.storeBytes(of: value.bigEndian, toByteOffset: count, as: UInt16.self)
        count += 2
    }

    package mutating func append(_ value: UInt32) {
        reserve(4)
        storage.storeBytes(of: value.bigEndian, toByteOffset: count, as: UInt32.self)
        count += 4
    }

    package mutating func append(_ value: UInt64) {
        reserve(8)
        storage.storeBytes(of: value.bigEndian, toByteOffset: count, as: UInt64.self)
        count += 8
    }

    package mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Overwrites a big-endian `UInt32` already written at `offset`.
    package mutating func set(_ value: UInt32, at offset: Int) {
        precondition(offset + 4 <= count)
        storage.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    /// Overwrites a big-endian `UInt64` already written at `offset`.
    package mutating func set(_ value: UInt64, at offset: Int) {
        precondition(offset + 8 <= count)
        storage.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt64.self)
    }

    private mutating func reserve(_ extra: Int) {
        let needed = count + extra
        guard needed > storage.count else { return }
        var capacity = storage.count
        while capacity < needed { capacity *= 2 }
        let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        if count > 0 {
            grown.baseAddress!.copyMemory(from: storage.baseAddress!, byteCount: count)
        }
        storage.deallocate()
        storage = grown
    }

    /// Releases memory above `limit` after a rare huge reply, so one 32 MiB read does not pin 32 MiB
    /// for the rest of the connection. Only valid when empty.
    package mutating func shrink(to limit: Int) {
        guard count == 0, storage.count > limit else { return }
        storage.deallocate()
        storage = .allocate(byteCount: limit, alignment: 16)
    }
}
