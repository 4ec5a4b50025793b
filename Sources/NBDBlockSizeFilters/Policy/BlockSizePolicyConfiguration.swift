import NBDCore

/// The blocksize-policy filter's parameters: what to advertise (`nil` keeps the layer below's value)
/// and what to do with requests that break it.
public struct BlockSizePolicyConfiguration: Sendable, Hashable {
    /// `blocksize-minimum`: a power of two up to 64 KiB.
    public var minimum: UInt32?
    /// `blocksize-preferred`: a power of two from 512 to 32 MiB.
    public var preferred: UInt32?
    /// `blocksize-maximum`: a multiple of the minimum, or 4 GiB − 1.
    public var maximum: UInt32?
    /// `blocksize-error-policy`.
    public var errorPolicy: BlockSizeErrorPolicy
    /// `blocksize-write-disconnect`: a write longer than this closes the connection.
    public var writeDisconnect: UInt32?

    /// Creates a configuration, checking it as nbdkit's `config_complete` does; every error names
    /// the parameter.
    public init(
        minimum: UInt32? = nil, preferred: UInt32? = nil, maximum: UInt32? = nil,
        errorPolicy: BlockSizeErrorPolicy = .allow, writeDisconnect: UInt32? = nil
    ) throws(NBDError) {
        if let minimum {
            guard minimum > 0, minimum & (minimum - 1) == 0 else {
                throw NBDError(.invalidArgument, "blocksize-minimum=\(minimum): must be a power of 2")
            }
            guard minimum <= 65536 else {
                throw NBDError(.invalidArgument, "blocksize-minimum=\(minimum): must be at most 64K")
            }
        }
        if let preferred {
            guard preferred & (preferred - 1) == 0, preferred >= 512, preferred <= 32 << 20 else {
                throw NBDError(
                    .invalidArgument, "blocksize-preferred=\(preferred): must be a power of 2 from 512 to 32M")
            }
        }
        if let minimum, let maximum, maximum != UInt32.max, maximum % minimum != 0 {
            // nbdkit's check compares the maximum with itself, so it never fires; its documentation
            // promises this one.
            throw NBDError(
                .invalidArgument,
                "blocksize-maximum=\(maximum): must be -1 (4294967295) or a multiple of blocksize-minimum")
        }
        if let minimum, let preferred, minimum > preferred {
            throw NBDError(
                .invalidArgument, "blocksize-minimum=\(minimum): must not exceed blocksize-preferred=\(preferred)")
        }
        if let preferred, let maximum, preferred > maximum {
            throw NBDError(
                .invalidArgument, "blocksize-preferred=\(preferred): must not exceed blocksize-maximum=\(maximum)")
        }
        if let minimum, let writeDisconnect, writeDisconnect <= minimum {
            throw NBDError(
                .invalidArgument, "blocksize-write-disconnect=\(writeDisconnect): must be larger than blocksize-minimum"
            )
        }
        self.minimum = minimum
        self.preferred = preferred
        self.maximum = maximum
        self.errorPolicy = errorPolicy
        self.writeDisconnect = writeDisconnect
    }

    /// The constraints to advertise over a layer that advertises `below`, as nbdkit computes them.
    func advertised(below: BlockSizeConstraints) throws(NBDError) -> BlockSizeConstraints {
        var result = below
        result.isEnforced = false
        // The advertised maximum is a hint, as in nbdkit: what the layer below accepts still is
        // (under `error` the filter itself refuses requests above the advertised maximum).
        result.enforcedMaximumPayload = below.acceptedMaximumPayload
        result.writeDisconnectLimit = writeDisconnect ?? below.writeDisconnectLimit
        if let minimum, let preferred, let maximum {
            result.minimum = minimum
            result.preferred = preferred
            result.maximumPayload = maximum
        } else if minimum == nil && preferred == nil && maximum == nil {
            return result
        } else if below.minimum == 1 && below.preferred == 4096
            && below.maximumPayload == BlockSizeConstraints.default.maximumPayload
        {
            // The layer below states nothing: fill the gaps with the protocol's defaults.
            result.minimum = minimum ?? 1
            result.preferred = preferred ?? 4096
            if let maximum {
                result.maximumPayload = maximum
            } else if let writeDisconnect {
                result.maximumPayload = writeDisconnect / result.minimum * result.minimum
            } else {
                result.maximumPayload = UInt32.max
            }
        } else {
            result.minimum = minimum ?? below.minimum
            result.preferred = preferred ?? below.preferred
            result.maximumPayload = maximum ?? below.maximumPayload
        }
        guard result.minimum <= result.preferred, result.preferred <= result.maximumPayload else {
            throw NBDError(
                .invalidArgument,
                "blocksize-policy: the resulting block sizes are invalid: minimum \(result.minimum), preferred \(result.preferred), maximum \(result.maximumPayload)"
            )
        }
        return result
    }
}
