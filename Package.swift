// swift-tools-version: 6.1
import PackageDescription

/// Upcoming features every target opts into: explicit `any`, imports that do not leak, and async
/// functions that stay on the caller's executor (no hop per filter layer on the hot path).
let upcomingFeatures: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
]

let package = Package(
    name: "swift-nbd-middleware",
    products: [
        .library(name: "NBDCore", targets: ["NBDCore"]),
        .library(name: "NBDBackends", targets: ["NBDBackends"]),
        .library(name: "NBDFUAFilter", targets: ["NBDFUAFilter"]),
        .library(name: "NBDStatsFilter", targets: ["NBDStatsFilter"]),
        .library(name: "NBDErrorFilter", targets: ["NBDErrorFilter"]),
        .library(name: "NBDServer", targets: ["NBDServer"]),
        .executable(name: "nbd-serve", targets: ["nbd-serve"]),
    ],
    dependencies: [],
    targets: [
        .target(name: "NBDCore", swiftSettings: upcomingFeatures),
        .target(name: "NBDBackends", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDFUAFilter", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDStatsFilter", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDErrorFilter", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(
            name: "NBDServer",
            dependencies: ["NBDCore", "NBDBackends", "NBDFUAFilter", "NBDStatsFilter", "NBDErrorFilter"],
            swiftSettings: upcomingFeatures
        ),
        .executableTarget(name: "nbd-serve", dependencies: ["NBDServer"], swiftSettings: upcomingFeatures),
        .target(
            name: "NBDTestSupport",
            dependencies: ["NBDCore"],
            path: "Tests/NBDTestSupport",
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDCoreTests",
            dependencies: ["NBDCore", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDBackendsTests",
            dependencies: ["NBDCore", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDFUAFilterTests",
            dependencies: ["NBDCore", "NBDFUAFilter", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDStatsFilterTests",
            dependencies: ["NBDCore", "NBDStatsFilter", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDErrorFilterTests",
            dependencies: ["NBDCore", "NBDErrorFilter", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDServerTests",
            dependencies: ["NBDCore", "NBDServer", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "ReadmeExampleTests",
            dependencies: ["NBDCore", "NBDBackends", "NBDFUAFilter", "NBDStatsFilter", "NBDServer"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDInteropTests",
            dependencies: ["NBDCore", "NBDServer", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
    ],
    swiftLanguageModes: [.v6]
)
