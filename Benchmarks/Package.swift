// swift-tools-version: 6.1
import PackageDescription

// The benchmarks are their own package so that the library keeps `dependencies: []`: only this
// package depends on ordo-one/package-benchmark. Run with `swift package benchmark` from this folder.

let upcomingFeatures: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
]

let benchmarkDependencies: [Target.Dependency] = [
    .product(name: "Benchmark", package: "package-benchmark"),
    .product(name: "NBDCore", package: "swift-nbd-middleware"),
    .product(name: "NBDBackends", package: "swift-nbd-middleware"),
    .product(name: "NBDStatsFilter", package: "swift-nbd-middleware"),
    .product(name: "NBDFUAFilter", package: "swift-nbd-middleware"),
    .product(name: "NBDFlowFilters", package: "swift-nbd-middleware"),
    .product(name: "NBDRangeFilters", package: "swift-nbd-middleware"),
    .product(name: "NBDFeatureFilters", package: "swift-nbd-middleware"),
    .product(name: "NBDLogFilter", package: "swift-nbd-middleware"),
    "BenchmarkSupport",
]

let package = Package(
    name: "swift-nbd-middleware-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-nbd-middleware", path: "../"),
        .package(url: "https://github.com/ordo-one/package-benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .target(name: "BenchmarkSupport", path: "Support/BenchmarkSupport", swiftSettings: upcomingFeatures),
        .executableTarget(
            name: "RequestPath",
            dependencies: benchmarkDependencies,
            path: "Benchmarks/RequestPath",
            swiftSettings: upcomingFeatures,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "MultiConnFlush",
            dependencies: benchmarkDependencies,
            path: "Benchmarks/MultiConnFlush",
            swiftSettings: upcomingFeatures,
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
