#if canImport(Glibc)
    import Glibc
#endif

/// How many clients `nbd-serve` serves at once. Like nbdkit it has no cap of its own: the limit is
/// what the process's file-descriptor limit allows, after raising the soft limit to the hard one.
/// `--filter=limit` is how an operator sets a lower one, as with nbdkit.
///
/// Each client costs one descriptor (its socket) and one thread; the backends share their files
/// between connections. ``reservedDescriptors`` are kept for everything else.
package enum ConnectionCapacity {
    /// Descriptors kept for standard streams, listeners, the backend's and filters' files (the stats
    /// file, the rate file), the `--run` command and libraries.
    package static let reservedDescriptors: UInt64 = 64

    /// Raises the soft `RLIMIT_NOFILE` to the hard limit, as far as the kernel allows, and returns
    /// the soft limit in force afterwards.
    @discardableResult
    package static func raiseDescriptorLimit() -> UInt64 {
        var limits = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limits) == 0 else { return 1024 }
        if limits.rlim_cur < limits.rlim_max {
            var raised = limits
            raised.rlim_cur = limits.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 {
                limits = raised
            }
        }
        return UInt64(limits.rlim_cur)
    }

    /// The most connections `descriptorLimit` descriptors allow: one each, after the reserve, and at
    /// least one.
    package static func maximumConnections(descriptorLimit: UInt64) -> Int {
        let available = descriptorLimit > reservedDescriptors ? descriptorLimit - reservedDescriptors : 1
        return Int(min(available, UInt64(Int32.max)))
    }

    /// Raises the descriptor limit and returns the connection cap it allows.
    package static func raiseAndDerive() -> Int {
        maximumConnections(descriptorLimit: raiseDescriptorLimit())
    }
}
