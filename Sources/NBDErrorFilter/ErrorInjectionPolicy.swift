#if canImport(Glibc)
import Glibc
#endif
import NBDCore

/// When and how the error filter fails one kind of operation.
public struct ErrorInjectionPolicy: Sendable, Hashable {
    /// The error to inject.
    public var code: NBDError.Code
    /// The probability of failing a request, 0...1.
    public var rate: Double
    /// If set, errors are injected only while this file exists.
    public var triggerFile: String?

    /// Creates a policy; by default it never injects anything.
    public init(code: NBDError.Code = .ioError, rate: Double = 0, triggerFile: String? = nil) {
        self.code = code
        self.rate = rate
        self.triggerFile = triggerFile
    }

    /// Whether this request should fail.
    @inlinable
    func shouldInject() -> Bool {
        guard rate > 0 else { return false }
        if let triggerFile, access(triggerFile, F_OK) != 0 { return false }
        return rate >= 1 || Double.random(in: 0..<1) < rate
    }

    /// Parses nbdkit's `error=` values.
    public static func parseCode(_ text: String, for key: String) throws(NBDError) -> NBDError.Code {
        switch text.uppercased() {
        case "EPERM": return .notPermitted
        case "EIO": return .ioError
        case "ENOMEM": return .outOfMemory
        case "EINVAL": return .invalidArgument
        case "ENOSPC": return .noSpace
        case "ESHUTDOWN": return .shutdown
        default:
            throw NBDError(.invalidArgument, "\(key)=\(text): use EPERM, EIO, ENOMEM, EINVAL, ENOSPC or ESHUTDOWN")
        }
    }

    /// Parses nbdkit's rates: `N%` (0 to 100) or a probability `0..1`.
    public static func parseRate(_ text: String, for key: String) throws(NBDError) -> Double {
        let trimmed = text.trimmingSpaces
        let value: Double?
        if trimmed.hasSuffix("%") {
            value = Double(trimmed.dropLast()).map { $0 / 100 }
        } else {
            value = Double(trimmed)
        }
        guard let value, value >= 0, value <= 1 else {
            throw NBDError(.invalidArgument, "\(key)=\(text): use a percentage 0%..100% or a probability 0..1")
        }
        return value
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
