// swift-tools-version: 6.1
import PackageDescription

// The bridges to the Swift server ecosystem are their own package so that the library keeps
// `dependencies: []`: only this package depends on swift-log, swift-metrics and
// swift-service-lifecycle. An embedder who wants none of them never resolves them.

let upcomingFeatures: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
]

let package = Package(
    name: "swift-nbd-middleware-integrations",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "NBDServiceLifecycle", targets: ["NBDServiceLifecycle"]),
        .library(name: "NBDLogging", targets: ["NBDLogging"]),
        .library(name: "NBDMetrics", targets: ["NBDMetrics"]),
        .executable(name: "nbd-integrations-example", targets: ["nbd-integrations-example"]),
    ],
    dependencies: [
        .package(name: "swift-nbd-middleware", path: ".."),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // NBDServer as a ServiceLifecycle `Service`: graceful shutdown drains, cancellation stops.
        .target(
            name: "NBDServiceLifecycle",
            dependencies: [
                .product(name: "NBDServer", package: "swift-nbd-middleware"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcomingFeatures
        ),
        // ServerConfiguration's logger callbacks to a swift-log Logger.
        .target(
            name: "NBDLogging",
            dependencies: [
                .product(name: "NBDServer", package: "swift-nbd-middleware"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcomingFeatures
        ),
        // A filter that counts and times requests into swift-metrics counters, timers and a meter.
        .target(
            name: "NBDMetrics",
            dependencies: [
                .product(name: "NBDCore", package: "swift-nbd-middleware"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: upcomingFeatures
        ),
        // A memory export served under a ServiceGroup with all three bridges.
        .executableTarget(
            name: "nbd-integrations-example",
            dependencies: [
                "NBDServiceLifecycle", "NBDLogging", "NBDMetrics",
                .product(name: "NBDCore", package: "swift-nbd-middleware"),
                .product(name: "NBDBackends", package: "swift-nbd-middleware"),
                .product(name: "NBDStatsFilter", package: "swift-nbd-middleware"),
                .product(name: "NBDServer", package: "swift-nbd-middleware"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcomingFeatures
        ),
        // What the bridges' tests share: an in-memory export whose writes can be held, bounded
        // waits, temporary directories. The root package's NBDTestSupport is `package` to it, so
        // this package keeps its own.
        .target(
            name: "IntegrationsTestSupport",
            dependencies: [
                .product(name: "NBDCore", package: "swift-nbd-middleware"),
                .product(name: "NBDClient", package: "swift-nbd-middleware"),
            ],
            path: "Tests/IntegrationsTestSupport",
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDServiceLifecycleTests",
            dependencies: [
                "NBDServiceLifecycle", "IntegrationsTestSupport",
                .product(name: "NBDCore", package: "swift-nbd-middleware"),
                .product(name: "NBDBackends", package: "swift-nbd-middleware"),
                .product(name: "NBDServer", package: "swift-nbd-middleware"),
                .product(name: "NBDClient", package: "swift-nbd-middleware"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDLoggingTests",
            dependencies: [
                "NBDLogging", "IntegrationsTestSupport",
                .product(name: "NBDCore", package: "swift-nbd-middleware"),
                .product(name: "NBDServer", package: "swift-nbd-middleware"),
                .product(name: "NBDClient", package: "swift-nbd-middleware"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDMetricsTests",
            dependencies: [
                "NBDMetrics", "IntegrationsTestSupport",
                .product(name: "NBDCore", package: "swift-nbd-middleware"),
                .product(name: "NBDServer", package: "swift-nbd-middleware"),
                .product(name: "NBDClient", package: "swift-nbd-middleware"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: upcomingFeatures
        ),
    ],
    swiftLanguageModes: [.v6]
)
