// swift-tools-version:6.1
import PackageDescription

// libFuzzer target for the wire decoder, validation and the envelope opener, kept in its own
// package so the fuzzing flags never touch normal builds. Built and run by `make fuzz`.
let package = Package(
    name: "FedSegFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "FedSeg", path: ".."),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
    ],
    targets: [
        .target(name: "CFuzzDriver"),
        .executableTarget(
            name: "fedseg-fuzz",
            dependencies: [
                "CFuzzDriver",
                .product(name: "FedSegProtocol", package: "FedSeg"),
                .product(name: "FedSegCrypto", package: "FedSeg"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: []
        )
    ],
    swiftLanguageModes: [.v6]
)
