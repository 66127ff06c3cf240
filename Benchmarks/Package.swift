// swift-tools-version:6.1
import PackageDescription

// A nested package so that benchmark-only code and dependencies stay out of normal builds.
let package = Package(
    name: "FedSegBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "FedSeg", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
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
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny")]
        )
    ],
    swiftLanguageModes: [.v6]
)
