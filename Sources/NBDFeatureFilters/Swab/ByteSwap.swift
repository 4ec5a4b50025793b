import NBDCore

/// How many bits the swab filter reverses at a time: `swab-bits` (8, 16, 32 or 64).
public struct SwabWidth: Sendable, Hashable {
    /// The word size in bytes: 1 (no change), 2, 4 or 8.
    public let bytes: Int

    /// `bits` must be 8, 16, 32 or 64.
    public init?(bits: Int) {
        guard [8, 16, 32, 64].contains(bits) else { return nil }
        self.bytes = bits / 8
    }

    /// Reverses the bytes of every word of `source` into `destination` (which may be the same
    /// memory). Both hold a whole number of words.
    @usableFromInline
    func swap(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) {
        switch bytes {
        case 2: swapWords(source, into: destination, as: UInt16.self)
        case 4: swapWords(source, into: destination, as: UInt32.self)
        case 8: swapWords(source, into: destination, as: UInt64.self)
        default:
            if source.baseAddress != UnsafeRawPointer(destination.baseAddress) {
                destination.copyMemory(from: source)
            }
        }
    }

    private func swapWords<Word: FixedWidthInteger>(
        _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, as: Word.Type
    ) {
        // Client buffers carry no alignment promise, hence unaligned loads and stores.
        var offset = 0
        while offset < source.count {
            let word = source.loadUnaligned(fromByteOffset: offset, as: Word.self)
            destination.storeBytes(of: word.byteSwapped, toByteOffset: offset, as: Word.self)
            offset += MemoryLayout<Word>.size
        }
    }

    /// `extents` (covering an aligned range) with every boundary moved to a multiple of the word size:
    /// a word that straddles two extents is a hole or zero only if both are, as nbdkit's aligned
    /// extents are.
    package func aligned(_ extents: [Extent]) -> [Extent] {
        let size = UInt64(bytes)
        guard size > 1 else { return extents }
        var result: [Extent] = []
        func append(_ length: UInt64, _ flags: Extent.Flags) {
            if let last = result.last, last.flags == flags {
                result[result.count - 1].length += length
            } else {
                result.append(Extent(length: length, flags: flags))
            }
        }
        var partialLength: UInt64 = 0
        var partialFlags: Extent.Flags = []
        for extent in extents {
            var length = extent.length
            if partialLength > 0 {
                let taken = min(length, size - partialLength)
                partialFlags.formIntersection(extent.flags)
                partialLength += taken
                length -= taken
                if partialLength == size {
                    append(size, partialFlags)
                    partialLength = 0
                }
            }
            let whole = length / size * size
            if whole > 0 { append(whole, extent.flags) }
            if length > whole {
                partialLength = length - whole
                partialFlags = extent.flags
            }
        }
        // A last partial word is left out (the caller asks again from there), unless it is all
        // there is: then it is reported as one word of allocated data, the safe answer.
        if result.isEmpty && partialLength > 0 { append(size, []) }
        return result
    }
}
