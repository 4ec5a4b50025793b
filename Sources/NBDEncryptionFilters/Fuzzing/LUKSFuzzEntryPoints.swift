import NBDCore

/// Entry points for the libFuzzer target `Fuzz/LUKSHeader` (see `Fuzz/run.sh`) and its corpus
/// replay in `swift test`: arbitrary bytes as the start of an image go through the header parser
/// exactly as the luks filter uses it; when they parse, the bytes after the header go through the
/// anti-forensic merge of each active key slot that they are long enough for.
///
/// Invariant beyond "does not crash": a header that parses has a payload inside the image, at
/// least one active slot, and every active slot's key material inside the image and before the
/// payload.
package enum LUKSFuzzEntryPoints {
    /// `data` is the image's first bytes; the image is taken to be 4096 times as long, so offsets
    /// in the header can point inside it.
    package static func header(_ data: UnsafeRawBufferPointer) {
        let imageSize = UInt64(data.count) * 4096
        guard let header = try? LUKSHeader(data, imageSize: imageSize) else { return }
        precondition(header.payloadOffset <= imageSize && header.payloadOffset >= UInt64(LUKSHeader.size))
        precondition(header.keySlots.count == 8 && header.keySlots.contains(where: \.isActive))
        let material = UnsafeRawBufferPointer(rebasing: data[LUKSHeader.size...])
        for slot in header.keySlots where slot.isActive {
            let end = slot.keyMaterialOffset + UInt64(slot.keyMaterialLength(keyBytes: header.keyBytes))
            precondition(end <= header.payloadOffset && end <= imageSize)
            if header.keyBytes * slot.stripes <= material.count {
                _ = try? AntiForensicMerge.merge(
                    material, keyBytes: header.keyBytes, stripes: slot.stripes, hash: header.hash)
            }
        }
    }
}
