import Glibc
import NBDCore

/// Turns a script's failed run into an ``NBDError``, as nbdkit's sh plugin does: the first word of
/// standard error may name an errno (`ENOSPC Out of space`, any case); otherwise the error is `EIO`.
package enum ScriptFailure {
    /// The errno names nbdkit recognises, and the code each becomes on the wire (EROFS is sent as
    /// EPERM, EDQUOT and EFBIG as ENOSPC, as NBDError(errno:) maps them).
    static let errnoNames: [String: Int32] = [
        "EPERM": EPERM, "EIO": EIO, "ENOMEM": ENOMEM, "EINVAL": EINVAL, "ENOSPC": ENOSPC,
        "EOVERFLOW": EOVERFLOW, "ESHUTDOWN": ESHUTDOWN, "ENOTSUP": ENOTSUP, "EOPNOTSUPP": EOPNOTSUPP,
        "EROFS": EROFS, "EDQUOT": EDQUOT, "EFBIG": EFBIG,
    ]

    /// The error for a script that exited with `status` (1, or 4 to 255, all errors as in nbdkit
    /// 1.32) after printing `errorOutput`; `context` names the script and method.
    package static func error(errorOutput: [UInt8], context: String) -> NBDError {
        let text = String(decoding: errorOutput, as: UTF8.self)
        let trimmed = text.drop { $0 == " " || $0 == "\t" }
        let word = trimmed.prefix { !$0.isWhitespace }
        var rest = trimmed.dropFirst(word.count).drop { $0 == " " || $0 == "\t" }
        var code: Int32 = EIO
        var name = "EIO"
        if let named = errnoNames[word.uppercased()] {
            code = named
            name = word.uppercased()
        } else {
            // Not an errno name (EINVALID, a plain message): the whole text is the message.
            rest = trimmed
        }
        var line = String(rest.prefix { $0 != "\n" })
        while let last = line.last, last == " " || last == "\t" || last == "\r" { line.removeLast() }
        let message =
            line.isEmpty ? "\(context): the script failed without a message on stderr" : "\(context): \(line)"
        var error = NBDError(errno: code, "")
        error.message = "\(message) (\(name))"
        return error
    }
}
