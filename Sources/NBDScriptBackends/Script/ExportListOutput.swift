import NBDCore

/// What `list_exports` and `default_export` print: an optional first line naming the form
/// (`NAMES`, `INTERLEAVED`, `NAMES+DESCRIPTIONS`), then the names, one a line, with their
/// descriptions interleaved or after all the names.
enum ExportListOutput {
    /// The exports `output` lists. A first line that names no form is the first name, as in
    /// nbdkit; empty lines are names too (the default export `""`), except the final newline's.
    static func parse(_ output: [UInt8]) -> [ExportEntry] {
        var lines = String(decoding: output, as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard let form = lines.first else { return [] }
        switch form {
        case "INTERLEAVED":
            let rest = Array(lines.dropFirst())
            // A name without its description line gets none, rather than losing the name.
            return stride(from: 0, to: rest.count, by: 2).map { index in
                ExportEntry(name: rest[index], description: index + 1 < rest.count ? rest[index + 1] : nil)
            }
        case "NAMES+DESCRIPTIONS":
            let rest = Array(lines.dropFirst())
            // nbdkit counts the lines and halves them; an odd line left over is a name alone.
            let half = (rest.count + 1) / 2
            return (0..<half).map { index in
                let descriptionIndex = half + index
                return ExportEntry(
                    name: rest[index], description: descriptionIndex < rest.count ? rest[descriptionIndex] : nil)
            }
        case "NAMES":
            return lines.dropFirst().map { ExportEntry(name: $0) }
        default:
            return lines.map { ExportEntry(name: $0) }
        }
    }
}
