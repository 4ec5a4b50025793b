import NBDBackends
import NBDBlockSizeFilters
import NBDCachingFilters
import NBDCeph
import NBDCompressionFilters
import NBDConnectionFilters
import NBDContainerFilters
import NBDCore
import NBDCurl
import NBDDataBackends
import NBDEncryptionFilters
import NBDErrorFilter
import NBDFUAFilter
import NBDFeatureFilters
import NBDFlowFilters
import NBDImageFormatFilters
import NBDRangeFilters
import NBDLogFilter
import NBDRetryFilters
import NBDScriptBackends
import NBDProxy
import NBDStatsFilter
import NBDTestingFilters

/// The backends and filters `nbd-serve` offers. Each one describes itself (name, summary, parameters,
/// how it is built) in its own module; adding one to `nbd-serve` is one line here.
package enum ServeCatalog {
    /// Every backend, in `--help` order.
    package static let backends: [any ConfigurableBackendProvider.Type] = [
        MemoryBackendProvider.self,
        FileBackendProvider.self,
        ConnectionCacheProvider.self,
        NBDProxyProvider.self,
        CurlProvider.self,
        RBDProvider.self,
        ShBackendProvider.self,
        EvalBackendProvider.self,
        InfoBackendProvider.self,
        NullBackendProvider.self,
        ZeroBackendProvider.self,
        FullBackendProvider.self,
        OnesBackendProvider.self,
        PatternBackendProvider.self,
        RandomBackendProvider.self,
        SparseRandomBackendProvider.self,
        DataBackendProvider.self,
        SplitBackendProvider.self,
    ]

    /// Every filter, in `--help` order.
    package static let filters: [any ConfigurableFilterLayer.Type] = [
        MultiConnLayer.self,
        FUALayer.self,
        StatsLayer.self,
        CountLayer.self,
        ErrorInjectionLayer.self,
        OffsetLayer.self,
        TruncateLayer.self,
        PartitionLayer.self,
        MapLayer.self,
        ProtectLayer.self,
        NoZeroLayer.self,
        NoCacheLayer.self,
        NoExtentsLayer.self,
        NoFilterLayer.self,
        ReadOnlyLayer.self,
        RotationalLayer.self,
        SwabLayer.self,
        ExtentListLayer.self,
        CheckWriteLayer.self,
        EvilLayer.self,
        DDRescueLayer.self,
        NoParallelLayer.self,
        DelayLayer.self,
        RateLayer.self,
        LimitLayer.self,
        SpinningLayer.self,
        BlockSizeLayer.self,
        BlockSizePolicyLayer.self,
        RetryLayer.self,
        RetryRequestLayer.self,
        LogLayer.self,
        CacheLayer.self,
        COWLayer.self,
        ReadAheadLayer.self,
        IPLayer.self,
        ExportNameLayer.self,
        TLSFallbackLayer.self,
        ExitLastLayer.self,
        ExitWhenLayer.self,
        PauseLayer.self,
        TimeLimitLayer.self,
        OpenOnceLayer.self,
        XZLayer.self,
        GzipLayer.self,
        BZip2Layer.self,
        LzipLayer.self,
        TarLayer.self,
        Ext2Layer.self,
        QCOW2DecLayer.self,
        LUKSLayer.self,
        ScanLayer.self,
        CacheExtentsLayer.self,
    ]

    /// The backend called `name`, if any.
    package static func backend(named name: String) -> (any ConfigurableBackendProvider.Type)? {
        backends.first { $0.backendName == name }
    }

    /// The error for a backend name that is not in ``backends``.
    package static func unknownBackend(_ name: String) -> CommandLineError {
        CommandLineError(
            "unknown backend '\(name)': use one of \(backends.map { $0.backendName }.joined(separator: ", ")); run 'nbd-serve --help' for their parameters"
        )
    }

    /// The error for a filter name that is not in ``filters``.
    package static func unknownFilter(_ name: String) -> CommandLineError {
        CommandLineError(
            "unknown filter '\(name)': use one of \(filters.map { $0.filterName }.joined(separator: ", ")); run 'nbd-serve --help' for their parameters"
        )
    }

    /// The filter called `name`, if any.
    package static func filter(named name: String) -> (any ConfigurableFilterLayer.Type)? {
        filters.first { $0.filterName == name }
    }
}
