import Foundation

/// Writes one line to standard error: how the command-line forms of these filters report what an
/// operator should see (a failing script, an exit event).
func printToStandardError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
