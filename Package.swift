// swift-tools-version:6.1
import PackageDescription

// One settings array for every Swift target, so the whole package is built the same way.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let grdb = Target.Dependency.product(name: "GRDB", package: "GRDB.swift")
let swiftProtobuf = Target.Dependency.product(name: "SwiftProtobuf", package: "swift-protobuf")
let hummingbird = Target.Dependency.product(name: "Hummingbird", package: "hummingbird")
let httpClient = Target.Dependency.product(name: "AsyncHTTPClient", package: "async-http-client")
let serviceLifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let metrics = Target.Dependency.product(name: "Metrics", package: "swift-metrics")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")
let toml = Target.Dependency.product(name: "TOMLKit", package: "TOMLKit")
let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioHTTP1 = Target.Dependency.product(name: "NIOHTTP1", package: "swift-nio")
let nioEmbedded = Target.Dependency.product(name: "NIOEmbedded", package: "swift-nio")
let httpTypes = Target.Dependency.product(name: "HTTPTypes", package: "swift-http-types")
let unixSignals = Target.Dependency.product(name: "UnixSignals", package: "swift-service-lifecycle")
let coreMetrics = Target.Dependency.product(name: "CoreMetrics", package: "swift-metrics")
let hummingbirdCore = Target.Dependency.product(name: "HummingbirdCore", package: "hummingbird")
let nioHTTPTypes = Target.Dependency.product(name: "NIOHTTPTypes", package: "swift-nio-extras")
let hummingbirdTLS = Target.Dependency.product(name: "HummingbirdTLS", package: "hummingbird")
let nioSSL = Target.Dependency.product(name: "NIOSSL", package: "swift-nio-ssl")
let hummingbirdTesting = Target.Dependency.product(name: "HummingbirdTesting", package: "hummingbird")
let mustache = Target.Dependency.product(name: "Mustache", package: "swift-mustache")
let postgresNIO = Target.Dependency.product(name: "PostgresNIO", package: "postgres-nio")

let package = Package(
    name: "FedSeg",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "FedSegMath", targets: ["FedSegMath"]),
        .library(name: "FedSegEmbedding", targets: ["FedSegEmbedding"]),
        .library(name: "FedSegClustering", targets: ["FedSegClustering"]),
        .library(name: "FedSegPrivacy", targets: ["FedSegPrivacy"]),
        .library(name: "FedSegCrypto", targets: ["FedSegCrypto"]),
        .library(name: "FedSegSecureAggregation", targets: ["FedSegSecureAggregation"]),
        .library(name: "FedSegProtocol", targets: ["FedSegProtocol"]),
        .library(name: "FedSegRecommend", targets: ["FedSegRecommend"]),
        .library(name: "FedSegCoordinator", targets: ["FedSegCoordinator"]),
        .library(name: "FedSegPostgres", targets: ["FedSegPostgres"]),
        // Temporary PostgreSQL servers and the package's executables, for tests and Benchmarks/.
        .library(name: "FedSegTestSupport", targets: ["FedSegTestSupport"]),
        .library(name: "FedSegClient", targets: ["FedSegClient"]),
        .library(name: "FedSegNode", targets: ["FedSegNode"]),
        .library(name: "FedSegSimulation", targets: ["FedSegSimulation"]),
        .executable(name: "coordinator", targets: ["coordinator"]),
        .executable(name: "client-sim", targets: ["client-sim"]),
        .executable(name: "fedseg-node", targets: ["fedseg-node"]),
        .executable(name: "fedseg", targets: ["fedseg"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.20.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.65.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.27.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.20.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.0.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.21.0"),
    ],
    targets: [
        // C layers. Only FedSegMath (BLAS, the OS CSPRNG and seeded stream) and FedSegCrypto (the rest of libsodium) import these.
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        // The SQLite GRDB links, for the one connection setting GRDB does not expose (FedSegClient).
        .systemLibrary(
            name: "CSQLite",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),

        // The fused K-means assignment pass (AVX2 / AVX-512 chosen at run time, FedSegClustering).
        .target(name: "CNearestCentroid"),
        // The intake's packed-varint decoder (SSE4.1 or portable, chosen at run time, FedSegProtocol).
        .target(name: "CPackedVarint"),
        // posix_spawn that closes every inherited descriptor (FedSegTestSupport's PostgreSQL server).
        .target(name: "CProcessSpawn"),

        .target(name: "FedSegMath", dependencies: ["COpenBLAS", "CSodium"], swiftSettings: swiftSettings),
        .target(name: "FedSegEmbedding", dependencies: ["FedSegMath"], swiftSettings: swiftSettings),
        .target(name: "FedSegClustering", dependencies: ["FedSegMath", "CNearestCentroid"], swiftSettings: swiftSettings),
        .target(name: "FedSegCrypto", dependencies: ["CSodium"], swiftSettings: swiftSettings),
        .target(
            name: "FedSegPrivacy", dependencies: ["FedSegMath", "FedSegClustering", "FedSegCrypto", grdb],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FedSegSecureAggregation",
            dependencies: ["FedSegMath", "FedSegCrypto", "FedSegPrivacy", "FedSegClustering", "FedSegProtocol"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FedSegProtocol",
            dependencies: ["FedSegMath", "FedSegCrypto", "CPackedVarint", swiftProtobuf, grdb],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FedSegRecommend",
            dependencies: ["FedSegMath", "FedSegClustering", "FedSegPrivacy", "FedSegCrypto", "FedSegProtocol", swiftProtobuf],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FedSegCoordinator",
            dependencies: [
                "FedSegMath", "FedSegEmbedding", "FedSegClustering", "FedSegPrivacy", "FedSegCrypto",
                "FedSegSecureAggregation", "FedSegProtocol", "FedSegRecommend",
                grdb, swiftProtobuf, hummingbird, hummingbirdCore, hummingbirdTLS, nioSSL, nioHTTPTypes, serviceLifecycle, logging, prometheus, toml, nioCore, httpTypes, unixSignals, coreMetrics, mustache,
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FedSegClient",
            dependencies: [
                "FedSegMath", "FedSegClustering", "FedSegPrivacy", "FedSegCrypto", "CSQLite",
                "FedSegSecureAggregation", "FedSegProtocol", "FedSegRecommend", grdb, swiftProtobuf, httpClient, nioCore, nioHTTP1, nioSSL,
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FedSegNode",
            dependencies: [
                "FedSegMath", "FedSegCrypto", "FedSegEmbedding", "FedSegClustering", "FedSegPrivacy", "FedSegProtocol", "FedSegRecommend",
                "FedSegClient", grdb, httpClient, logging, serviceLifecycle, hummingbird, prometheus, coreMetrics, swiftProtobuf,
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FedSegSimulation",
            dependencies: [
                "FedSegNode", "FedSegMath", "FedSegEmbedding", "FedSegClustering", "FedSegPrivacy", "FedSegProtocol", "FedSegRecommend", "FedSegClient",
                "FedSegCoordinator", "FedSegSecureAggregation", httpClient, logging, serviceLifecycle, swiftProtobuf, hummingbird, httpTypes,
                nioCore, nioHTTP1, nioEmbedded,
            ],
            swiftSettings: swiftSettings
        ),
        // The coordinator's state on PostgreSQL, for several coordinator processes (SQLite stays the default).
        .target(
            name: "FedSegPostgres",
            dependencies: ["FedSegPrivacy", "FedSegProtocol", postgresNIO, logging, nioCore],
            swiftSettings: swiftSettings
        ),
        .target(name: "FedSegCommandLine", dependencies: ["FedSegProtocol", argumentParser, logging], swiftSettings: swiftSettings),
        .target(
            name: "FedSegTestSupport",
            dependencies: ["CProcessSpawn"],
            swiftSettings: swiftSettings
        ),

        // Executables: argument parsing and a call into a library, nothing else.
        .executableTarget(
            name: "coordinator",
            dependencies: ["FedSegMath", "FedSegCoordinator", "FedSegCommandLine", argumentParser, logging],
            path: "coordinator",
            exclude: ["coordinator.toml"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "client-sim",
            dependencies: [
                "FedSegMath", "FedSegEmbedding", "FedSegProtocol", "FedSegClient", "FedSegNode", "FedSegSimulation", "FedSegCommandLine", argumentParser,
            ],
            path: "client-sim",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fedseg-node",
            dependencies: ["FedSegMath", "FedSegEmbedding", "FedSegNode", "FedSegPrivacy", "FedSegCommandLine", argumentParser, logging, serviceLifecycle, unixSignals],
            path: "node",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fedseg",
            dependencies: [
                "FedSegMath", "FedSegCrypto", "FedSegEmbedding", "FedSegClustering", "FedSegPrivacy", "FedSegProtocol",
                "FedSegCoordinator", "FedSegClient", "FedSegSimulation", "FedSegCommandLine", "FedSegPostgres", argumentParser, httpClient,
            ],
            swiftSettings: swiftSettings
        ),

        .testTarget(name: "FedSegMathTests", dependencies: ["FedSegMath"], swiftSettings: swiftSettings),
        .testTarget(name: "FedSegCommandLineTests", dependencies: ["FedSegCommandLine", "FedSegProtocol", argumentParser, logging], swiftSettings: swiftSettings),
        .testTarget(
            name: "FedSegEmbeddingTests",
            dependencies: ["FedSegEmbedding", "FedSegMath", "FedSegTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegClusteringTests",
            dependencies: ["FedSegClustering", "FedSegMath", "FedSegTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegPrivacyTests",
            dependencies: ["FedSegPrivacy", "FedSegClustering", "FedSegMath", "FedSegTestSupport", grdb],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegCryptoTests",
            dependencies: ["FedSegCrypto"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegSecureAggregationTests",
            dependencies: ["FedSegSecureAggregation", "FedSegClustering", "FedSegCrypto", "FedSegMath", "FedSegPrivacy"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegProtocolTests",
            dependencies: ["FedSegProtocol", "FedSegCrypto", "FedSegMath", swiftProtobuf, grdb],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegRecommendTests",
            dependencies: ["FedSegRecommend", "FedSegCrypto", "FedSegPrivacy", "FedSegMath", "FedSegProtocol"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegCoordinatorTests",
            dependencies: [
                "FedSegCoordinator", "FedSegClustering", "FedSegCrypto", "FedSegEmbedding", "FedSegMath", "FedSegPrivacy", "FedSegProtocol",
                "FedSegSecureAggregation", "FedSegTestSupport",
                grdb, logging, hummingbird, hummingbirdTesting, nioCore, httpTypes,
                swiftProtobuf,
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegClientTests",
            dependencies: [
                "FedSegClient", "FedSegCrypto", "FedSegMath", "FedSegPrivacy", "FedSegProtocol", "FedSegSecureAggregation",
                swiftProtobuf, grdb,
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegNodeTests",
            dependencies: ["FedSegNode", "FedSegClient", "FedSegCrypto", "FedSegEmbedding", "FedSegMath", "FedSegProtocol", "FedSegRecommend", "FedSegTestSupport", swiftProtobuf],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegSimulationTests",
            dependencies: ["FedSegSimulation", "FedSegNode", "FedSegClustering", "FedSegEmbedding", "FedSegMath", "FedSegClient", "FedSegProtocol", nioHTTP1, swiftProtobuf],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegPostgresTests",
            dependencies: ["FedSegPostgres", "FedSegPrivacy", "FedSegProtocol", "FedSegTestSupport", postgresNIO, grdb],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FedSegTestSupportTests",
            dependencies: ["FedSegTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["FedSegMath", "FedSegPrivacy", "FedSegPostgres", "FedSegTestSupport", grdb, postgresNIO],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
