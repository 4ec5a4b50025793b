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
        // nbdkit's test-data plugins: null, zero, full, ones, pattern, random, sparse-random, data, split.
        .library(name: "NBDDataBackends", targets: ["NBDDataBackends"]),
        .library(name: "NBDFUAFilter", targets: ["NBDFUAFilter"]),
        .library(name: "NBDStatsFilter", targets: ["NBDStatsFilter"]),
        .library(name: "NBDErrorFilter", targets: ["NBDErrorFilter"]),
        .library(name: "NBDRangeFilters", targets: ["NBDRangeFilters"]),
        .library(name: "NBDFeatureFilters", targets: ["NBDFeatureFilters"]),
        .library(name: "NBDFlowFilters", targets: ["NBDFlowFilters"]),
        .library(name: "NBDBlockSizeFilters", targets: ["NBDBlockSizeFilters"]),
        .library(name: "NBDRetryFilters", targets: ["NBDRetryFilters"]),
        .library(name: "NBDLogFilter", targets: ["NBDLogFilter"]),
        .library(name: "NBDCachingFilters", targets: ["NBDCachingFilters"]),
        .library(name: "NBDConnectionFilters", targets: ["NBDConnectionFilters"]),
        .library(name: "NBDTestingFilters", targets: ["NBDTestingFilters"]),
        .library(name: "NBDServer", targets: ["NBDServer"]),
        .library(name: "NBDClient", targets: ["NBDClient"]),
        .library(name: "NBDProxy", targets: ["NBDProxy"]),
        // Disk images over HTTP(S); libcurl is loaded at run time, so nothing links it.
        .library(name: "NBDCurl", targets: ["NBDCurl"]),
        // TLS (GnuTLS) for NBDServer; an embedder who does not depend on this product never links GnuTLS.
        .library(name: "NBDTLS", targets: ["NBDTLS"]),
        // TLS (GnuTLS) for NBDClient: `GnuTLSClientProvider`. Links no server.
        .library(name: "NBDTLSClient", targets: ["NBDTLSClient"]),
        // The GnuTLS sessions and credentials NBDTLS and NBDTLSClient share; links neither side.
        .library(name: "NBDGnuTLS", targets: ["NBDGnuTLS"]),
        // Ceph RBD images; librbd is loaded at run time, so nothing links Ceph at build time.
        .library(name: "NBDCeph", targets: ["NBDCeph"]),
        // nbdkit's sh and eval plugins: methods are shell scripts, run as processes.
        .library(name: "NBDScriptBackends", targets: ["NBDScriptBackends"]),
        // xz, gzip, bzip2, lzip: read-only views of a compressed layer below (zlib, liblzma, libbz2).
        .library(name: "NBDCompressionFilters", targets: ["NBDCompressionFilters"]),
        // tar and ext2: one file inside an archive or a filesystem image served as the export.
        .library(name: "NBDContainerFilters", targets: ["NBDContainerFilters"]),
        // qcow2dec: the disk inside a qcow2 image served raw (zlib; libzstd loaded at run time).
        .library(name: "NBDImageFormatFilters", targets: ["NBDImageFormatFilters"]),
        // luks: a LUKSv1 image below served decrypted, read and written (GnuTLS).
        .library(name: "NBDEncryptionFilters", targets: ["NBDEncryptionFilters"]),
        .executable(name: "nbd-serve", targets: ["nbd-serve"]),
    ],
    dependencies: [],
    targets: [
        .target(name: "NBDCore", swiftSettings: upcomingFeatures),
        .target(name: "NBDBackends", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        // Exports made of generated data (null, zero, full, ones, pattern, random, sparse-random),
        // of data written on the command line (data, kept in a memory backend) and of files joined
        // end to end (split).
        .target(name: "NBDDataBackends", dependencies: ["NBDCore", "NBDBackends"], swiftSettings: upcomingFeatures),
        .target(name: "NBDFUAFilter", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDStatsFilter", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDErrorFilter", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        // offset, truncate, protect: filters that change which bytes a request reaches.
        .target(name: "NBDRangeFilters", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        // nozero, nocache, noextents: filters that take features away or emulate them.
        .target(name: "NBDFeatureFilters", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        // noparallel, delay, rate, limit: filters that shape when requests and clients are served.
        .target(name: "NBDFlowFilters", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDBlockSizeFilters", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDRetryFilters", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDLogFilter", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        .target(name: "NBDCachingFilters", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        // ip, exportname, tls-fallback, exitlast, exitwhen, pause, time-limit, openonce: filters that
        // act on connections, the export list and the server's life rather than on data.
        .target(name: "NBDConnectionFilters", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        // Filters for testing clients and tools: checkwrite, evil, ddrescue.
        .target(name: "NBDTestingFilters", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        // The NBD wire layer client and server share: the protocol's constants, header and chunk
        // codecs, and the transport (socket, buffered reader, combining writer, thread starter).
        // Not a product: everything in it is `package`.
        .target(name: "NBDWire", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        // The server other programs embed: it knows the NBD protocol and NBDCore's contracts, nothing else.
        .target(name: "NBDServer", dependencies: ["NBDCore", "NBDWire"], swiftSettings: upcomingFeatures),
        // An async NBD client; knows the protocol and NBDCore's types, not the server.
        .target(name: "NBDClient", dependencies: ["NBDCore", "NBDWire"], swiftSettings: upcomingFeatures),
        // The `nbd` backend: an upstream NBD server through NBDClient.
        .target(
            name: "NBDProxy", dependencies: ["NBDCore", "NBDWire", "NBDClient", "NBDTLSClient"], swiftSettings: upcomingFeatures),
        // Declarations and variadic-call trampolines for libcurl, which NBDCurl opens with dlopen:
        // no libcurl headers or library are needed to build.
        .target(name: "CCurlShim"),
        // The `curl` backend: a disk image on a web server, read with HTTP range requests.
        .target(name: "NBDCurl", dependencies: ["NBDCore", "CCurlShim"], swiftSettings: upcomingFeatures),
        // The `rbd` backend: Ceph RBD images through librbd/librados, loaded with dlopen at first use.
        .target(name: "NBDCeph", dependencies: ["NBDCore"], swiftSettings: upcomingFeatures),
        // posix_spawn with closefrom and pipe2, which Swift's Glibc module does not declare.
        .target(name: "CSpawnShim"),
        // The `sh` and `eval` backends: nbdkit's scripted plugins, one process per method call.
        .target(
            name: "NBDScriptBackends", dependencies: ["NBDCore", "CSpawnShim"], swiftSettings: upcomingFeatures),
        // GnuTLS, the TLS library nbdkit, qemu and libnbd use. Only NBDGnuTLS and NBDEncryptionFilters import it.
        .systemLibrary(
            name: "CGnuTLS", pkgConfig: "gnutls", providers: [.apt(["libgnutls28-dev"])]),
        // GnuTLS sessions and credentials, the same for both sides: NBDServer's and NBDClient's TLS
        // modules build on it, and it knows neither.
        .target(name: "NBDGnuTLS", dependencies: ["NBDCore", "CGnuTLS"], swiftSettings: upcomingFeatures),
        // STARTTLS for NBDServer: GnuTLS sessions behind NBDServer's SecureTransport seam.
        .target(name: "NBDTLS", dependencies: ["NBDServer", "NBDGnuTLS"], swiftSettings: upcomingFeatures),
        // STARTTLS for NBDClient: GnuTLS sessions behind NBDClient's ClientTLSProvider seam.
        .target(name: "NBDTLSClient", dependencies: ["NBDClient", "NBDGnuTLS"], swiftSettings: upcomingFeatures),
        // The compression libraries the stock image has headers for. Only NBDCompressionFilters links them.
        .systemLibrary(name: "CLZMA", providers: [.apt(["liblzma-dev"])]),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CBZip2", providers: [.apt(["libbz2-dev"])]),
        // The xz, gzip, bzip2 and lzip filters: a compressed image below served decompressed, read-only.
        .target(
            name: "NBDCompressionFilters", dependencies: ["NBDCore", "CLZMA", "CZlib", "CBZip2"],
            swiftSettings: upcomingFeatures),
        // An io_manager through which libext2fs (loaded with dlopen) reads an image from Swift callbacks:
        // no e2fsprogs headers or library are needed to build.
        .target(name: "CExt2Shim"),
        // The tar filter: one entry of a tar archive below, found by reading the archive's headers.
        // The ext2 filter: one file inside an ext2/3/4 image below, through libext2fs and CExt2Shim.
        .target(
            name: "NBDContainerFilters", dependencies: ["NBDCore", "NBDRangeFilters", "CExt2Shim"],
            swiftSettings: upcomingFeatures),
        // The qcow2dec filter: a qcow2 image below decoded to the raw disk, read-only. zlib for
        // compressed clusters; libzstd is opened with dlopen for images compressed with zstd.
        .target(
            name: "NBDImageFormatFilters", dependencies: ["NBDCore", "CZlib"], swiftSettings: upcomingFeatures),
        // The luks filter: LUKSv1 key slots and sector encryption through GnuTLS (CGnuTLS), with the
        // noparallel filter's AsyncLock for read-modify-write of partial sectors.
        .target(
            name: "NBDEncryptionFilters", dependencies: ["NBDCore", "NBDFlowFilters", "CGnuTLS"],
            swiftSettings: upcomingFeatures),
        // nbd-serve's command line: option parsing, parameter routing, help, and the list of every
        // backend and filter it offers. Not a product: only the executable and its tests use it.
        .target(
            name: "NBDServeCommand",
            dependencies: [
                "NBDCore", "NBDServer", "NBDBackends", "NBDDataBackends",
                "NBDFUAFilter", "NBDStatsFilter", "NBDErrorFilter",
                "NBDRangeFilters", "NBDFeatureFilters", "NBDFlowFilters",
                "NBDBlockSizeFilters", "NBDRetryFilters", "NBDLogFilter",
                "NBDCachingFilters", "NBDConnectionFilters", "NBDProxy", "NBDCurl", "NBDCeph",
                "NBDTLS", "NBDTLSClient", "NBDScriptBackends", "NBDCompressionFilters", "NBDContainerFilters",
                "NBDTestingFilters", "NBDImageFormatFilters", "NBDEncryptionFilters",
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
            dependencies: ["NBDCore", "NBDBackends", "NBDCachingFilters", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDBackendsTests",
            dependencies: ["NBDCore", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDDataBackendsTests",
            dependencies: ["NBDCore", "NBDBackends", "NBDDataBackends", "NBDTestSupport"],
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
            name: "NBDRangeFiltersTests",
            dependencies: ["NBDCore", "NBDRangeFilters", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDFeatureFiltersTests",
            dependencies: ["NBDCore", "NBDFeatureFilters", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDFlowFiltersTests",
            dependencies: ["NBDCore", "NBDFlowFilters", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDBlockSizeFiltersTests",
            dependencies: ["NBDCore", "NBDBlockSizeFilters", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDRetryFiltersTests",
            dependencies: ["NBDCore", "NBDRetryFilters", "NBDErrorFilter", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDLogFilterTests",
            dependencies: ["NBDCore", "NBDLogFilter", "NBDErrorFilter", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDCachingFiltersTests",
            dependencies: ["NBDCore", "NBDCachingFilters", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDConnectionFiltersTests",
            dependencies: ["NBDCore", "NBDConnectionFilters", "NBDBackends", "NBDServer", "NBDClient", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDCompressionFiltersTests",
            dependencies: ["NBDCore", "NBDCompressionFilters", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDContainerFiltersTests",
            dependencies: ["NBDCore", "NBDContainerFilters", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDImageFormatFiltersTests",
            dependencies: ["NBDCore", "NBDImageFormatFilters", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDEncryptionFiltersTests",
            dependencies: ["NBDCore", "NBDEncryptionFilters", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDTestingFiltersTests",
            dependencies: ["NBDCore", "NBDTestingFilters", "NBDBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDWireTests",
            dependencies: ["NBDCore", "NBDWire", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDServerTests",
            dependencies: ["NBDCore", "NBDServer", "NBDBackends", "NBDWire", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDClientTests",
            dependencies: ["NBDCore", "NBDClient", "NBDServer", "NBDBackends", "NBDWire", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDProxyTests",
            dependencies: ["NBDCore", "NBDClient", "NBDProxy", "NBDServer", "NBDWire", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDCurlTests",
            dependencies: ["NBDCore", "NBDCurl", "NBDServer", "NBDClient", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDCephTests",
            dependencies: ["NBDCore", "NBDCeph", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDScriptBackendsTests",
            dependencies: ["NBDCore", "NBDScriptBackends", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDTLSTests",
            dependencies: [
                "NBDCore", "NBDServer", "NBDTLS", "NBDTLSClient", "NBDGnuTLS", "NBDClient", "NBDBackends", "NBDWire",
                "NBDTestSupport",
            ],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "NBDServeCommandTests",
            dependencies: ["NBDCore", "NBDServer", "NBDServeCommand", "NBDTestSupport"],
            swiftSettings: upcomingFeatures
        ),
        .testTarget(
            name: "ReadmeExampleTests",
            dependencies: ["NBDCore", "NBDBackends", "NBDFUAFilter", "NBDStatsFilter", "NBDServer", "NBDTestSupport"],
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
