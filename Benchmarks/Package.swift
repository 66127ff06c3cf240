// swift-tools-version:6.1
import PackageDescription

// A nested package so that benchmark-only code and dependencies stay out of normal builds.
let package = Package(
    name: "FedSegBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "FedSeg", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.65.0"),
    ],
    targets: [
        .executableTarget(
            name: "fedseg-bench",
            dependencies: [
                .product(name: "FedSegMath", package: "FedSeg"),
                .product(name: "FedSegClustering", package: "FedSeg"),
                .product(name: "FedSegEmbedding", package: "FedSeg"),
                .product(name: "FedSegPrivacy", package: "FedSeg"),
                .product(name: "FedSegSimulation", package: "FedSeg"),
                .product(name: "FedSegNode", package: "FedSeg"),
                .product(name: "FedSegCoordinator", package: "FedSeg"),
                .product(name: "FedSegClient", package: "FedSeg"),
                .product(name: "FedSegCrypto", package: "FedSeg"),
                .product(name: "FedSegProtocol", package: "FedSeg"),
                .product(name: "FedSegSecureAggregation", package: "FedSeg"),
                .product(name: "FedSegPostgres", package: "FedSeg"),
                .product(name: "FedSegTestSupport", package: "FedSeg"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny")]
        )
    ],
    swiftLanguageModes: [.v6]
)
