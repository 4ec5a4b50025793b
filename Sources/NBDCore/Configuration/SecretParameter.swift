#if canImport(Glibc)
    import Glibc
#endif

/// nbdkit's forms of a secret parameter (curl's `password=`, `proxy-password=` and `cookie=`, luks's
/// `passphrase=`): the value itself, `-` (asked for on the terminal), `+FILE` (read from a file) or
/// `-FD` (read from an inherited file descriptor). A value read from a file or descriptor loses one
/// trailing newline. Shared here so that every module reads secrets the way nbdkit_read_password does.
package enum SecretParameter {
    /// The secret `text` stands for. `key` names the parameter in errors.
    package static func resolve(_ text: String, for key: String) throws(NBDError) -> String {
        if text == "-" { return try prompt(for: key) }
        if text.hasPrefix("+") {
            let path = String(text.dropFirst())
            guard !path.isEmpty else { throw NBDError(.invalidArgument, "\(key)=+: expected a file name after +") }
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw NBDError(errno: errno, "\(key)=+\(path): cannot open \(path)") }
            defer { close(descriptor) }
            return try readAll(descriptor, for: "\(key)=+\(path)")
        }
        if text.count > 1, text.hasPrefix("-"), let descriptor = Int32(text.dropFirst()), descriptor >= 0 {
            // The descriptor was given to us for this secret alone; it is used up.
            defer { if descriptor > 2 { close(descriptor) } }
            return try readAll(descriptor, for: "\(key)=\(text)")
        }
        return text
    }

    private static func readAll(_ descriptor: Int32, for what: String) throws(NBDError) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw NBDError(errno: errno, "\(what): cannot read")
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func show(_ text: String) {
        var text = text
        text.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
    }

    /// Asks on the terminal with echo off, as nbdkit does for `password=-`.
    private static func prompt(for key: String) throws(NBDError) -> String {
        guard isatty(0) == 1 else {
            throw NBDError(
                .invalidArgument,
                "\(key)=-: standard input is not a terminal, so the secret cannot be asked for; use \(key)=+FILE or \(key)=-FD"
            )
        }
        let label = String(key.map { $0 == "-" ? " " : $0 })
        show("\(label): ")
        var saved = termios()
        let hasTerminalSettings = tcgetattr(0, &saved) == 0
        if hasTerminalSettings {
            var silent = saved
            silent.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(0, TCSAFLUSH, &silent)
        }
        defer {
            if hasTerminalSettings { tcsetattr(0, TCSAFLUSH, &saved) }
            show("\n")
        }
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while read(0, &byte, 1) == 1, byte != UInt8(ascii: "\n") { bytes.append(byte) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
