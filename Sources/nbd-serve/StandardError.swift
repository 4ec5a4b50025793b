#if canImport(Glibc)
    import Glibc
#endif

/// Writes `text` to standard error unbuffered, so messages interleave correctly with a `--run` child.
func printToStandardError(_ text: String) {
    var line = text
    if !line.hasSuffix("\n") { line += "\n" }
    line.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(2, bytes.baseAddress! + offset, bytes.count - offset)
            if written <= 0 { return }
            offset += written
        }
    }
}
