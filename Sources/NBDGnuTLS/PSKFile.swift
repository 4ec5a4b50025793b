import Foundation
import NBDCore

/// A pre-shared key file as `psktool` writes it: one `username:hexkey` line per client.
///
/// ```
/// $ psktool -u alice -p keys.psk
/// $ cat keys.psk
/// alice:6c4d7f43a3a1d9a2c1ab02bd7d8a5e0f2c3d4e5f60718293a4b5c6d7e8f90a1b
/// ```
struct PSKFile {
    struct Entry {
        var username: String
        var hexKey: String
    }

    var entries: [Entry]

    /// Reads and checks `path`: every non-empty line must be `username:hexkey` with an even number
    /// of hexadecimal digits.
    init(path: String) throws(NBDError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw NBDError(.invalidArgument, "cannot read the PSK file \(path): \(error.localizedDescription)")
        }
        var entries: [Entry] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let colon = trimmed.firstIndex(of: ":") else {
                throw NBDError(.invalidArgument, "PSK file \(path), line \(index + 1): expected username:hexkey")
            }
            let username = String(trimmed[..<colon])
            let key = String(trimmed[trimmed.index(after: colon)...])
            guard !username.isEmpty, !key.isEmpty, key.count % 2 == 0, key.allSatisfy(\.isHexDigit) else {
                throw NBDError(
                    .invalidArgument,
                    "PSK file \(path), line \(index + 1): expected username:hexkey with an even number of hex digits (as psktool writes)"
                )
            }
            entries.append(Entry(username: username, hexKey: key))
        }
        guard !entries.isEmpty else {
            throw NBDError(
                .invalidArgument, "the PSK file \(path) has no keys; make one with 'psktool -u USERNAME -p \(path)'")
        }
        self.entries = entries
    }
}
