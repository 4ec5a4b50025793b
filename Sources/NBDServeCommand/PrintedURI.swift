/// What `--print-uri` prints: the URI, the URI quoted for a shell, and the `nbdinfo` command that
/// queries the server, as nbdkit prints them.
package enum PrintedURI {
    /// The three parts, one per line (the command indented), ending with a newline.
    package static func text(_ uri: String) -> String {
        let quoted = shellQuoted(uri)
        return "\(uri)\nShell-quoted URI: \(quoted)\nCommand to query the NBD endpoint:\n  nbdinfo \(quoted)\n"
    }

    /// `text` as is when every character is one a shell leaves alone (letters, digits and
    /// `. - _ = , : /`), else in double quotes with `$`, `` ` ``, `\` and `"` escaped, the form nbdkit
    /// prints.
    package static func shellQuoted(_ text: String) -> String {
        let plain = !text.isEmpty
            && text.unicodeScalars.allSatisfy { scalar in
                scalar.isASCII
                    && (("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                        || ".-_=,:/".unicodeScalars.contains(scalar))
            }
        if plain { return text }
        var out = "\""
        for character in text {
            if "$`\\\"".contains(character) { out.append("\\") }
            out.append(character)
        }
        return out + "\""
    }
}
