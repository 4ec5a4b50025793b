import NBDCore

/// Combines the layer below's block status with what a cache or overlay holds: ranges the filter
/// holds itself replace whatever the layer below says about them.
///
/// Without this a client that skips holes (nbdcopy, `qemu-img convert`) would skip blocks whose
/// newest data exists only in the cache or overlay, and copy zeroes instead.
package enum ExtentOverlay {
    /// One range the filter describes itself, in absolute byte offsets.
    package struct Override: Sendable, Hashable {
        package var range: Range<UInt64>
        package var flags: Extent.Flags

        package init(_ range: Range<UInt64>, _ flags: Extent.Flags) {
            self.range = range
            self.flags = flags
        }
    }

    /// The extents of `base` (which starts at `start`) with `overrides` (sorted, not overlapping)
    /// laid over them, clipped to `start ..< start + count`, neighbours with equal flags merged.
    package static func apply(_ overrides: [Override], to base: [Extent], start: UInt64, count: UInt64) -> [Extent] {
        let end = start + count
        // The base as absolute segments, with anything it does not describe counted as data.
        var segments: [(range: Range<UInt64>, flags: Extent.Flags)] = []
        var position = start
        for extent in base where position < end && extent.length > 0 {
            let stop = min(end, position + extent.length)
            segments.append((position..<stop, extent.flags))
            position = stop
        }
        if position < end { segments.append((position..<end, [])) }

        var result: [Extent] = []
        func append(_ length: UInt64, _ flags: Extent.Flags) {
            guard length > 0 else { return }
            if let last = result.last, last.flags == flags {
                result[result.count - 1].length += length
            } else {
                result.append(Extent(length: length, flags: flags))
            }
        }
        var index = overrides.startIndex
        for segment in segments {
            var cursor = segment.range.lowerBound
            while cursor < segment.range.upperBound {
                while index < overrides.endIndex && overrides[index].range.upperBound <= cursor { index += 1 }
                if index < overrides.endIndex, overrides[index].range.lowerBound <= cursor {
                    let stop = min(segment.range.upperBound, overrides[index].range.upperBound)
                    append(stop - cursor, overrides[index].flags)
                    cursor = stop
                } else {
                    let next = index < overrides.endIndex ? overrides[index].range.lowerBound : segment.range.upperBound
                    let stop = min(segment.range.upperBound, next)
                    append(stop - cursor, segment.flags)
                    cursor = stop
                }
            }
        }
        return result
    }
}
