import NBDCore

/// The payload of `NBD_CMD_BLOCK_STATUS` with `NBD_CMD_FLAG_PAYLOAD_LEN` (extended headers): a
/// 64-bit effect length, then the ids of the meta contexts the client wants, 32 bits each.
enum BlockStatusPayload {
    /// The effect length, or `EINVAL` when an id is unknown or named twice, as the protocol requires.
    /// `bytes` holds 8 + 4n bytes, n >= 1 (checked by ``ExtendedRequestCheck``).
    static func parse(_ bytes: [UInt8], knownContext: UInt32) -> Result<UInt64, NBDError> {
        precondition(bytes.count >= 12 && (bytes.count - 8) % 4 == 0)
        return bytes.withUnsafeBytes { raw in
            let length = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            var seen: Set<UInt32> = []
            for index in stride(from: 8, to: raw.count, by: 4) {
                let id = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: index, as: UInt32.self))
                guard id == knownContext else {
                    return .failure(
                        NBDError(.invalidArgument, "block status asks for meta context \(id), which was not selected"))
                }
                guard seen.insert(id).inserted else {
                    return .failure(NBDError(.invalidArgument, "block status names meta context \(id) twice"))
                }
            }
            return .success(length)
        }
    }
}
