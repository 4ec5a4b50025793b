/// A sparse byte image with value semantics: copying it is cheap (chunks are shared copy-on-write),
/// which is what lets every connection of the connection-cache backend take a snapshot of the
/// shared image on its first access without copying the data.
struct SparseImage: Sendable {
    static let chunkSize = 4096

    /// Allocated chunks by index; a missing chunk reads as zeroes.
    private(set) var chunks: [UInt64: [UInt8]] = [:]

    /// Copies `buffer.count` bytes at `offset` into `buffer`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) {
        Self.forEachPiece(offset: offset, count: UInt64(buffer.count)) { index, within, done, length in
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + length)])
            if let chunk = chunks[index] {
                chunk.withUnsafeBytes { source in
                    target.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[within..<(within + length)]))
                }
            } else {
                target.initializeMemory(as: UInt8.self, repeating: 0)
            }
        }
    }

    /// Writes `data` at `offset`.
    mutating func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) {
        Self.forEachPiece(offset: offset, count: UInt64(data.count)) { index, within, done, length in
            var chunk = chunks.removeValue(forKey: index) ?? [UInt8](repeating: 0, count: Self.chunkSize)
            chunk.withUnsafeMutableBytes { target in
                UnsafeMutableRawBufferPointer(rebasing: target[within..<(within + length)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: data[done..<(done + length)]))
            }
            chunks[index] = chunk
        }
    }

    /// Writes `count` zero bytes at `offset`, dropping chunks that become entirely zero.
    mutating func zero(count: UInt64, at offset: UInt64) {
        Self.forEachPiece(offset: offset, count: count) { index, within, _, length in
            if length == Self.chunkSize {
                chunks[index] = nil
            } else if var chunk = chunks.removeValue(forKey: index) {
                for i in within..<(within + length) { chunk[i] = 0 }
                chunks[index] = chunk
            }
        }
    }

    /// Copies the range `[offset, offset + count)` from `source` into this image.
    mutating func copyRange(from source: SparseImage, offset: UInt64, count: UInt64) {
        Self.forEachPiece(offset: offset, count: count) { index, within, _, length in
            if length == Self.chunkSize {
                chunks[index] = source.chunks[index]
            } else if let sourceChunk = source.chunks[index] {
                var chunk = chunks.removeValue(forKey: index) ?? [UInt8](repeating: 0, count: Self.chunkSize)
                chunk.replaceSubrange(within..<(within + length), with: sourceChunk[within..<(within + length)])
                chunks[index] = chunk
            } else {
                zero(count: UInt64(length), at: index * UInt64(Self.chunkSize) + UInt64(within))
            }
        }
    }

    /// Calls `body(chunkIndex, offsetInChunk, bytesDoneSoFar, length)` for each chunk the range touches.
    private static func forEachPiece(offset: UInt64, count: UInt64, _ body: (UInt64, Int, Int, Int) -> Void) {
        var done: UInt64 = 0
        while done < count {
            let position = offset + done
            let index = position / UInt64(Self.chunkSize)
            let within = Int(position % UInt64(Self.chunkSize))
            let length = Int(min(UInt64(Self.chunkSize - within), count - done))
            body(index, within, Int(done), length)
            done += UInt64(length)
        }
    }
}
