import NBDCore

#if canImport(Glibc)
    import Glibc
#endif

extension NBDError {
    /// The error for librados'/librbd's negative errno `result` from `what` (such as "write of 4096
    /// bytes at 0 to rbd/disk"): the NBD code closest to it and the system's words for it.
    ///
    /// Read-only images and snapshots (`EROFS`) and refused access map to `EPERM`; a full cluster
    /// or quota to `ENOSPC`; a timed-out or failed OSD or monitor request, a lost lock and anything
    /// else to `EIO`, which is what a client retries or reports as a storage failure.
    init(rbdResult result: Int, _ what: String) {
        let errno = Int32(clamping: -result)
        let code: NBDError.Code
        switch errno {
        case EROFS, EPERM, EACCES: code = .notPermitted
        case ENOSPC, EDQUOT: code = .noSpace
        case EINVAL: code = .invalidArgument
        case ENOMEM: code = .outOfMemory
        default: code = .ioError
        }
        self.init(code, "rbd: \(what) failed: \(rbdErrnoText(result))")
    }
}

/// librados'/librbd's negative errno `result` in words, such as `Connection timed out (errno 110)`.
func rbdErrnoText(_ result: Int) -> String {
    let errno = Int32(clamping: -result)
    return "\(String(cString: strerror(errno))) (errno \(errno))"
}
