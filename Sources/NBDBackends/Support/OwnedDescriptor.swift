import Glibc

/// A file descriptor that closes itself when it goes away. Non-copyable, so exactly one owner closes
/// it and nobody uses it afterwards (swift-system's `FileDescriptor` is not available without a
/// package dependency).
struct OwnedDescriptor: ~Copyable {
    /// The descriptor number, valid for as long as this value lives.
    let rawValue: Int32

    init(taking rawValue: Int32) {
        self.rawValue = rawValue
    }

    deinit {
        // A failed close of a descriptor we only read or synced loses nothing; nobody can act on it.
        _ = close(rawValue)
    }
}
