extension StatsCollector {
    /// The statistics in the Prometheus text exposition format (version 0.0.4), which node_exporter's
    /// textfile collector and `promtool check metrics` read, as of now.
    ///
    /// One series per export name and operation (every operation appears, with zeros, so dashboards see
    /// the series before the first request):
    ///
    /// ```text
    /// nbd_requests_total{export="",operation="read"} 12
    /// nbd_request_bytes_total{export="",operation="read"} 49152
    /// nbd_request_errors_total{export="",operation="write",error="ENOSPC"} 1
    /// nbd_request_duration_seconds_bucket{export="",operation="read",le="0.0001"} 11
    /// nbd_connections_open{export=""} 1
    /// ```
    ///
    /// Requests, bytes and durations count successful requests (as nbdkit's report does); failures are
    /// counted apart by error name. A duration bucket counts the requests whose latency histogram bucket
    /// (see ``LatencyHistogram``) lies wholly at or below its bound, so a request near a bound may be
    /// counted in the next bucket: latencies are overstated by less than 12.5 %, never understated.
    /// `_sum` is exact.
    public func prometheus() -> String {
        PrometheusText.render(exportSnapshots(), elapsedNanoseconds: snapshot().elapsedNanoseconds)
    }
}

/// Renders ``ExportStats`` in the Prometheus text exposition format.
enum PrometheusText {
    /// The duration histogram's bounds, in nanoseconds and as written in `le` labels (seconds).
    static let durationBounds: [(nanoseconds: UInt64, label: String)] = [
        (10_000, "1e-05"), (25_000, "2.5e-05"), (50_000, "5e-05"), (100_000, "0.0001"), (250_000, "0.00025"),
        (500_000, "0.0005"), (1_000_000, "0.001"), (2_500_000, "0.0025"), (5_000_000, "0.005"),
        (10_000_000, "0.01"), (25_000_000, "0.025"), (50_000_000, "0.05"), (100_000_000, "0.1"),
        (250_000_000, "0.25"), (500_000_000, "0.5"), (1_000_000_000, "1"), (2_500_000_000, "2.5"),
        (5_000_000_000, "5"), (10_000_000_000, "10"),
    ]

    static func render(_ exports: [ExportStats], elapsedNanoseconds: UInt64) -> String {
        var out = ""
        family(
            &out, "nbd_stats_elapsed_seconds", "gauge",
            "Seconds since the stats filter started counting.")
        out += "nbd_stats_elapsed_seconds \(seconds(elapsedNanoseconds))\n"

        family(&out, "nbd_connections_open", "gauge", "Client connections open now, by export name.")
        for export in exports {
            out += "nbd_connections_open{export=\(quoted(export.exportName))} \(export.openConnections)\n"
        }

        family(&out, "nbd_requests_total", "counter", "Requests that succeeded, by export and operation.")
        forEachOperation(exports) { labels, stats in out += "nbd_requests_total{\(labels)} \(stats.count)\n" }

        family(
            &out, "nbd_request_bytes_total", "counter",
            "Bytes of requests that succeeded (the requested length), by export and operation.")
        forEachOperation(exports) { labels, stats in out += "nbd_request_bytes_total{\(labels)} \(stats.bytes)\n" }

        family(
            &out, "nbd_request_errors_total", "counter",
            "Requests that failed, by export, operation and error name (EIO, ENOSPC, ...).")
        forEachOperation(exports) { labels, stats in
            for failure in stats.failureCodes {
                out += "nbd_request_errors_total{\(labels),error=\(quoted(failure.name))} \(failure.count)\n"
            }
        }

        family(
            &out, "nbd_request_duration_seconds", "histogram",
            "Time requests that succeeded spent in the layers below the stats filter.")
        forEachOperation(exports) { labels, stats in
            var cumulative: UInt64 = 0
            var bucket = 0
            for bound in durationBounds {
                while bucket < LatencyHistogram.bucketCount - 1,
                    LatencyHistogram.upperBound(of: bucket) <= bound.nanoseconds
                {
                    cumulative &+= stats.latency.counts[bucket]
                    bucket += 1
                }
                out += "nbd_request_duration_seconds_bucket{\(labels),le=\"\(bound.label)\"} \(cumulative)\n"
            }
            out += "nbd_request_duration_seconds_bucket{\(labels),le=\"+Inf\"} \(stats.count)\n"
            out += "nbd_request_duration_seconds_sum{\(labels)} \(seconds(stats.nanoseconds))\n"
            out += "nbd_request_duration_seconds_count{\(labels)} \(stats.count)\n"
        }
        return out
    }

    private static func family(_ out: inout String, _ name: String, _ type: String, _ help: String) {
        out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    private static func forEachOperation(_ exports: [ExportStats], _ body: (String, OperationStats) -> Void) {
        for export in exports {
            for stats in export.snapshot.operations {
                body("export=\(quoted(export.exportName)),operation=\"\(stats.operation)\"", stats)
            }
        }
    }

    /// Nanoseconds as decimal seconds, exactly (no floating-point rounding).
    static func seconds(_ nanoseconds: UInt64) -> String {
        let whole = nanoseconds / 1_000_000_000
        let fraction = nanoseconds % 1_000_000_000
        guard fraction != 0 else { return "\(whole)" }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 9 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }

    /// A label value in double quotes, with the three escapes the format defines.
    static func quoted(_ value: String) -> String {
        var out = "\""
        for character in value.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out + "\""
    }
}
