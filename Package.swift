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
        // TLS (GnuTLS) for NBDServer; an embedder who does not depend on this product never links GnuTLS.
        .library(name: "NBDTLS", targets: ["NBDTLS"]),
        .executable(name: "nbd-serve", targets: ["nbd-serve"]),
    ],
    dependencies: [],
    targets: [
        .target(name: "NBDCore", swiftSettings: upcomingFeatures),
        .target(name: "NBDBackends", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDFUAFilter", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDStatsFilter", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDErrorFilter", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        // The server other programs embed: it knows the NBD protocol and NBDCore's contracts, nothing else.
        .target(name: "NBDServer", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        // GnuTLS, the TLS library nbdkit, qemu and libnbd use. Only NBDTLS imports it.
        .systemLibrary(
            name: "CGnuTLS", pkgConfig: "gnutls", providers: [.apt(["libgnutls28-dev"])]),
        // STARTTLS for NBDServer: GnuTLS sessions behind NBDServer's SecureTransport seam.
        .target(name: "NBDTLS", dependencies: ["NBDServer", "CGnuTLS"], swiftSettings: upcomingFeatures),
        // nbd-serve's command line: option parsing, parameter routing, help, and the list of every
        // backend and filter it offers. Not a product: only the executable and its tests use it.
        .target(
            name: "NBDServeCommand",
            dependencies: [
                "NBDCore", "NBDServer", "NBDBackends",
                "NBDFUAFilter", "NBDStatsFilter", "NBDErrorFilter",
                "NBDTLS",
            ],
            swiftSettings: upcomingFeatures
        ),
        .executableTarget(
            name: "nbd-serve", dependencies: ["NBDCore", "NBDServer", "NBDServeCommand"],
            swiftSettings: upcomingFeatures),
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
            name: "NBDTLSTests",
            dependencies: ["NBDCore", "NBDServer", "NBDTLS", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDServeCommandTests",
            dependencies: ["NBDCore", "NBDServer", "NBDServeCommand", "NBDTestSupport"],
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
