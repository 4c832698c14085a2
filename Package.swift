// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Waiver",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "waiver", targets: ["waiver"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
    ],
    targets: [
        // The domain: pure and deterministic, Foundation only.
        .target(name: "WaiverCore"),
        // Readers and writers at the edge: policy files, waiver.yaml, plans, SARIF, output formats.
        .target(
            name: "WaiverFormats",
            dependencies: [
                "WaiverCore",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The register on SQLite (GRDB): migrations, records, the hash-chained audit log.
        .target(
            name: "WaiverStore",
            dependencies: [
                "WaiverCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "waiver",
            dependencies: [
                "WaiverCore",
                "WaiverFormats",
                "WaiverStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "WaiverTests",
            dependencies: [
                "WaiverCore", "WaiverFormats", "WaiverStore",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            resources: [.copy("Fixtures")]
        ),
    ]
)
