extension StatsSnapshot {
    /// The snapshot as one JSON object, with keys in a fixed order and integers only (times in
    /// nanoseconds), so it is stable to compare and needs no Foundation. The schema is in
    /// `Documentation/StatsReport.md`:
    ///
    /// ```json
    /// {"elapsed_ns":1000000,"threshold":95,"total":{"ops":3,"bytes":8192,"failures":0},
    ///  "operations":{"read":{"ops":1,"bytes":4096,"time_ns":1000,"failures":{"total":0,"codes":{}},
    ///    "latency_ns":{"p50":1000,"p90":1000,"p99":1000,"max":1000},
    ///    "sizes":[{"bits":12,"requests":1,"bytes":4096,"offset_zero":1,"aligned":[]}]}, ...}}
    /// ```
    ///
    /// `aligned` lists, for each alignment some request has exactly, the cumulative number of requests
    /// aligned to at least that many bits (offset 0 included): the numbers of the text report's
    /// `N bit aligned` lines, without the threshold's cut-off.
    public func json() -> String {
        var out = "{\"elapsed_ns\":\(elapsedNanoseconds),\"threshold\":\(threshold),"
        out += "\"total\":{\"ops\":\(totalOperations),\"bytes\":\(totalBytes),\"failures\":\(totalFailures)},"
        out += "\"operations\":{"
        out += operations.map(Self.json(of:)).joined(separator: ",")
        out += "}}"
        return out
    }

    private static func json(of stats: OperationStats) -> String {
        var out =
            "\"\(stats.operation)\":{\"ops\":\(stats.count),\"bytes\":\(stats.bytes),\"time_ns\":\(stats.nanoseconds),"
        let codes = stats.failureCodes.map { "\(quoted($0.name)):\($0.count)" }.joined(separator: ",")
        out += "\"failures\":{\"total\":\(stats.failures),\"codes\":{\(codes)}},"
        let latency = stats.latency
        out +=
            "\"latency_ns\":{\"p50\":\(latency.p50),\"p90\":\(latency.p90),\"p99\":\(latency.p99),\"max\":\(latency.maximum)},"
        let sizes = stats.sizeBuckets.map { bucket in
            let aligned = (0..<64).filter { bucket.exactAlignment[$0] > 0 }.map {
                "{\"bits\":\($0),\"requests\":\(bucket.requests(alignedTo: $0))}"
            }
            return "{\"bits\":\(bucket.sizeBits),\"requests\":\(bucket.requests),\"bytes\":\(bucket.bytes),"
                + "\"offset_zero\":\(bucket.offsetZeroRequests),\"aligned\":[\(aligned.joined(separator: ","))]}"
        }
        out += "\"sizes\":[\(sizes.joined(separator: ","))]}"
        return out
    }

    /// A JSON string literal. Code names are ASCII identifiers, but escape anyway.
    private static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
