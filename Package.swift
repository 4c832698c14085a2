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
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/vapor/multipart-kit.git", from: "4.7.1"),
        .package(url: "https://github.com/weichsel/ZIPFoundation.git", from: "0.9.20"),
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
        // The register on PostgreSQL (postgres-nio), for teams and several server replicas.
        .target(
            name: "WaiverPostgres",
            dependencies: [
                "WaiverCore", "WaiverStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What a user can do with a register, behind the CLI, the API and the pages alike.
        .target(
            name: "WaiverUseCases",
            dependencies: ["WaiverCore", "WaiverFormats", "WaiverStore", "WaiverPostgres", .product(name: "ZIPFoundation", package: "ZIPFoundation")]
        ),
        // The shared register over HTTP: JSON API, authentication, scheduler, webhooks.
        .target(
            name: "WaiverServer",
            dependencies: [
                "WaiverCore", "WaiverFormats", "WaiverStore", "WaiverPostgres", "WaiverUseCases",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "MultipartKit", package: "multipart-kit"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ],
            exclude: ["Templates"]
        ),
        .executableTarget(
            name: "waiver",
            dependencies: [
                "WaiverCore",
                "WaiverFormats",
                "WaiverStore",
                "WaiverPostgres",
                "WaiverUseCases",
                "WaiverServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        // Fuzz targets for the readers: with `-Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING` a libFuzzer
        // binary (scripts/fuzz.sh); without, a replayer that runs saved inputs through the same harness.
        .target(name: "CFuzzSupport"),
        .executableTarget(
            name: "WaiverFuzz",
            dependencies: ["WaiverCore", "WaiverFormats", "WaiverStore", "CFuzzSupport"]
        ),
        .testTarget(
            name: "WaiverTests",
            dependencies: [
                "WaiverCore", "WaiverFormats", "WaiverStore", "WaiverPostgres", "WaiverUseCases", "WaiverServer",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            resources: [.copy("Fixtures")]
        ),
    ]
)
