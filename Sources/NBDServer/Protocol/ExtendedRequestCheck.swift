import NBDCore
import NBDWire

/// The rules only extended headers have, checked before a request reaches the validator: what
/// `NBD_CMD_FLAG_PAYLOAD_LEN` means for each command, and the error for a read above the payload
/// limit.
enum ExtendedRequestCheck {
    /// What to do with a request.
    enum Outcome: Equatable {
        /// Carry on: the validator and the stack see the request (with the flag stripped).
        case proceed
        /// Reply `wireError` with `message`, after reading and dropping `payload` bytes.
        case refuse(wireError: UInt32, message: String, payload: UInt64)
        /// A block-status request in the payload form: read its payload (small, checked here) and
        /// parse it with ``BlockStatusPayload``.
        case readBlockStatusPayload
    }

    /// The most context ids a block-status payload is read for. Only one context exists, and a
    /// payload naming an id twice is refused, so a longer payload is refused unread (but consumed).
    static var maximumBlockStatusContexts: UInt64 { 64 }

    /// Checks one extended request: `length` is the header's (a payload length when `payloadFlag`,
    /// otherwise an effect length); `blockStatusPayload` says whether `NBD_FLAG_BLOCK_STATUS_PAYLOAD`
    /// was advertised; `maximumPayload` is the largest read or write the connection accepts.
    static func check(
        _ command: Command, payloadFlag: Bool, length: UInt64, blockStatusPayload: Bool, maximumPayload: UInt64
    ) -> Outcome {
        let invalid = NBDError.Code.invalidArgument.wireValue
        switch command {
        case .write:
            // The protocol says a write MUST carry the flag, but qemu 10's client sends writes without
            // it: a write's length is its payload length either way (as in the compact form), so the
            // stream stays in step with both kinds of client.
            return .proceed
        case .blockStatus where payloadFlag:
            guard blockStatusPayload else {
                return .refuse(
                    wireError: invalid,
                    message: "block status with a payload, but NBD_FLAG_BLOCK_STATUS_PAYLOAD was not advertised",
                    payload: length)
            }
            guard length >= 12, (length - 8) % 4 == 0, length <= 8 + 4 * maximumBlockStatusContexts else {
                return .refuse(
                    wireError: invalid,
                    message: "a block status payload of \(length) bytes: expected an 8-byte length and one context id",
                    payload: length)
            }
            return .readBlockStatusPayload
        default:
            if payloadFlag {
                return .refuse(
                    wireError: invalid, message: "NBD_CMD_FLAG_PAYLOAD_LEN on \(command), which takes no payload",
                    payload: length)
            }
            if command == .read && length > maximumPayload {
                // The protocol lets a server refuse a read it would not send in one go with EOVERFLOW,
                // which tells the client to retry smaller.
                return .refuse(
                    wireError: NBDError.Code.overflow.wireValue,
                    message: "read of \(length) bytes exceeds the maximum payload \(maximumPayload)", payload: 0)
            }
            return .proceed
        }
    }
}
