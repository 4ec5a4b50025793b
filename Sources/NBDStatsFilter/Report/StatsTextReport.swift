extension StatsSnapshot {
    /// The report in nbdkit's stats filter format, line for line, with two nbdkit bugs fixed.
    ///
    /// ```text
    /// total: 3 ops, 0.049622 s, 8.00 KiB, 161.22 KiB/s
    /// read: 1 ops, 0.000001 s, 4.00 KiB, 3.81 GiB/s op, 80.61 KiB/s total
    ///   Request size and alignment breakdown:
    ///     other sizes: 100.0% (1 reqs, 4.00 KiB total)
    ///
    /// flush: 1 ops, 0.000000 s, 0 bytes, (n/a)/s op, 0 bytes/s total
    /// ```
    ///
    /// Times are whole microseconds (nbdkit measures with `gettimeofday`); `total:` counts every
    /// operation but cache and the bytes of read, write, trim and zero. The fixes, described in
    /// `Documentation/StatsReport.md`:
    /// - size buckets with the same number of requests are all listed (nbdkit keys a map by the count,
    ///   so one of them silently disappears); ties are listed smallest size first;
    /// - `other sizes` shows the bytes of the sizes not listed (nbdkit shows all the operation's bytes).
    ///
    /// When requests failed, a `failed:` section follows, which nbdkit does not have (it does not count
    /// failures).
    public func report() -> String {
        var out = ""
        let microseconds = elapsedNanoseconds / 1000
        let bytes = totalBytes
        out += "total: \(totalOperations) ops, \(cFormat("%.6f", Double(microseconds) / 1_000_000.0)) s, "
        out += "\(humanSize(bytes)), \(humanRate(bytes, microseconds: microseconds))/s\n"
        for stats in operations where stats.count > 0 {
            // nbdkit adds whole microseconds per request; summing nanoseconds and truncating once is
            // more accurate and differs by less than a microsecond per request.
            let opMicroseconds = stats.nanoseconds / 1000
            out += "\(stats.operation): \(stats.count) ops, "
            out += "\(cFormat("%.6f", Double(opMicroseconds) / 1_000_000.0)) s, \(humanSize(stats.bytes)), "
            out += "\(humanRate(stats.bytes, microseconds: opMicroseconds))/s op, "
            out += "\(humanRate(stats.bytes, microseconds: microseconds))/s total\n"
            if threshold != 0 && !stats.sizeBuckets.isEmpty {
                out += "  Request size and alignment breakdown:\n"
                appendHistogram(stats, to: &out)
                out += "\n"
            }
        }
        if totalFailures > 0 {
            out += "failed: \(totalFailures) ops\n"
            for stats in operations where stats.failures > 0 {
                let codes = stats.failureCodes.map { "\($0.name) \($0.count)" }.joined(separator: ", ")
                out += "  \(stats.operation): \(stats.failures) (\(codes))\n"
            }
        }
        return out
    }

    /// nbdkit's threshold as a fraction, computed the same way so that the cut-offs round identically.
    private var thresholdFraction: Double { Double(threshold) / 100 }

    private func appendHistogram(_ stats: OperationStats, to out: inout String) {
        // Fix for nbdkit quirk (a): sort the buckets instead of inverting them into a map keyed by count.
        typealias Entry = (bucket: RequestSizeBucket, requests: UInt64)
        let entries: [Entry] = stats.sizeBuckets.map { ($0, $0.requests) }
        let buckets = entries.filter { $0.requests > 0 }.sorted { (a: Entry, b: Entry) -> Bool in
            a.requests != b.requests ? a.requests > b.requests : a.bucket.sizeBits < b.bucket.sizeBits
        }
        let totalRequests: UInt64 = buckets.reduce(0) { $0 &+ $1.requests }
        let total = Double(totalRequests)
        let toPrint = UInt64(thresholdFraction * total)
        var printed: UInt64 = 0
        for (index, entry) in buckets.enumerated() {
            if printed >= toPrint {
                let requests = totalRequests - printed
                // Fix for nbdkit quirk (b): the bytes of the sizes not listed, not all the bytes.
                let otherBytes = buckets[index...].reduce(0) { $0 &+ $1.bucket.bytes }
                out += "    other sizes: \(cFormat("%4.1f", Double(requests) / total * 100))% "
                out += "(\(requests) reqs, \(humanSize(otherBytes)) total)\n"
                break
            }
            out +=
                "    \(padded2(entry.bucket.sizeBits)) bits: \(cFormat("%4.1f", Double(entry.requests) / total * 100))% "
            out += "(\(entry.requests) reqs, \(humanSize(entry.bucket.bytes)) total)\n"
            printed += entry.requests
            appendAlignment(entry.bucket, to: &out)
        }
    }

    private func appendAlignment(_ bucket: RequestSizeBucket, to out: inout String) {
        // Only alignments that some request has exactly appear, as in nbdkit's map; offset 0 adds to
        // each of them.
        let levels = (0..<64).filter { bucket.exactAlignment[$0] > 0 }
        let cumulative = levels.map { bucket.requests(alignedTo: $0) }
        let totalRequests = bucket.requests
        let total = Double(totalRequests)
        let cutoff = UInt64((1 - thresholdFraction) * total)
        for (i, bits) in levels.enumerated() {
            let requests = cumulative[i]
            if requests < cutoff {
                out +=
                    "         \(padded2(bits))+ bit-aligned: \(cFormat("%4.1f", Double(requests) / total * 100))% (\(requests))\n"
                break
            }
            // The counts are cumulative, so print a level only where the next one has fewer requests.
            if i + 1 == levels.count || cumulative[i + 1] != requests {
                out +=
                    "         \(padded2(bits)) bit aligned: \(cFormat("%5.1f", Double(requests &* 100) / total))% (\(requests))\n"
            }
        }
    }
}
