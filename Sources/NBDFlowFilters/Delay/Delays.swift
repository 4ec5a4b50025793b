import NBDCore

/// How long the delay filter waits before each kind of request: nbdkit's `delay-*` parameters.
/// A zero delay (the default for all) costs nothing: the request goes straight down.
public struct Delays: Sendable, Hashable {
    /// Before reads (`delay-read`, `rdelay`).
    public var read: Duration
    /// Before writes (`delay-write`; `wdelay` sets write, zero and trim).
    public var write: Duration
    /// Before write-zeroes (`delay-zero`).
    public var zero: Duration
    /// Before trims (`delay-trim`).
    public var trim: Duration
    /// Before block status (`delay-extents`).
    public var extents: Duration
    /// Before cache requests (`delay-cache`).
    public var cache: Duration
    /// Before a connection's stack opens (`delay-open`).
    public var open: Duration
    /// Before a connection's stack closes (`delay-close`).
    public var close: Duration
    /// Whether fast-zero requests wait like other zeroes (`delay-fast-zero=true`, the default) or fail
    /// at once with `ENOTSUP` without reaching the layer below (`false`).
    public var delaysFastZero: Bool

    /// Creates delays; every one defaults to zero and fast zeroes are delayed, as in nbdkit.
    public init(
        read: Duration = .zero, write: Duration = .zero, zero: Duration = .zero, trim: Duration = .zero,
        extents: Duration = .zero, cache: Duration = .zero, open: Duration = .zero, close: Duration = .zero,
        delaysFastZero: Bool = true
    ) {
        self.read = read
        self.write = write
        self.zero = zero
        self.trim = trim
        self.extents = extents
        self.cache = cache
        self.open = open
        self.close = close
        self.delaysFastZero = delaysFastZero
    }

    /// The requests that wait: the server runs them as slow operations, so several requests of one
    /// connection can wait at once, as they do on nbdkit's worker threads.
    public var delayedOperations: Operations {
        var operations: Operations = []
        if read > .zero { operations.insert(.read) }
        if write > .zero { operations.insert(.write) }
        if zero > .zero { operations.insert(.zero) }
        if trim > .zero { operations.insert(.trim) }
        if extents > .zero { operations.insert(.extents) }
        if cache > .zero { operations.insert(.cache) }
        return operations
    }

    /// Reads nbdkit's parameters in the order given, so a later one wins: `delay-read`/`rdelay`,
    /// `delay-write`, `wdelay` (write, zero and trim), `delay-zero`, `delay-trim`, `delay-extents`,
    /// `delay-cache`, `delay-open`, `delay-close` (seconds such as `1.5`, or with `s`, `ms`, `us`,
    /// `μs` or `ns`) and `delay-fast-zero` (a boolean).
    public init(parameters: ParameterValues) throws(NBDError) {
        self.init()
        for entry in parameters {
            if entry.key == "delay-fast-zero" {
                delaysFastZero = try parseBoolean(entry.value, for: entry.key)
                continue
            }
            let text = entry.value.replacingOccurrences(of: "μs", with: "us")
            let value = try parseDuration(text, for: entry.key)
            switch entry.key {
            case "rdelay", "delay-read": read = value
            case "delay-write": write = value
            case "wdelay":
                write = value
                zero = value
                trim = value
            case "delay-zero": zero = value
            case "delay-trim": trim = value
            case "delay-extents": extents = value
            case "delay-cache": cache = value
            case "delay-open": open = value
            case "delay-close": close = value
            default: break
            }
        }
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard contains(target) else { return self }
        return split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
