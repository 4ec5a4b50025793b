/// A failure of `nbd-serve` itself (not of the command line), reported on standard error with exit
/// status 1.
struct ServeFailure: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
