// swift-tools-version: 6.2
import PackageDescription

// Every target of ours builds in Swift 6 mode with strict concurrency, and any warning is an error:
// a warning left in today is a bug found by an operator tomorrow.
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "standby",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "standby", targets: ["standby"]),
        .executable(name: "standby-lab", targets: ["standby-lab"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        // FilePath for swift-subprocess's API on Linux (Darwin's System module has it built in).
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        // C libraries, wrapped once each.
        .systemLibrary(
            name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(
            name: "CLDNS", path: "Sources/CLDNS", pkgConfig: "ldns",
            providers: [.apt(["libldns-dev"])]),
        .systemLibrary(
            name: "CTLS", path: "Sources/CTLS", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]),
        // MIT Kerberos' GSSAPI, for GSS-TSIG: the only DNS update authentication Windows DNS takes
        // in an Active Directory-integrated zone. No pkgConfig: krb5-gssapi's cflags are an
        // -isystem, which SwiftPM refuses (a warning on every build); libkrb5-dev puts the headers
        // in /usr/include/gssapi and the library on the default path all the same.
        .systemLibrary(
            name: "CGSSAPI", path: "Sources/CGSSAPI", providers: [.apt(["libkrb5-dev"])]),
        // Samba's libsmbclient, for smb:// sources: SMB2 and SMB3, byte ranges, signing,
        // encryption, NTLMv2 and Kerberos (libcurl speaks only SMB1 and reads files whole).
        .systemLibrary(
            name: "CSMBClient", path: "Sources/CSMBClient", pkgConfig: "smbclient",
            providers: [.apt(["libsmbclient-dev"])]),

        // libsmbclient's printed messages (d_printf) taken off standard output, and its word that a
        // session could not be encrypted (it goes on unencrypted even when that is required).
        // Exported from the executable, so that the dynamic linker binds the library's d_printf here.
        .target(
            name: "CSMBClientHooks", path: "Sources/CSMBClientHooks",
            linkerSettings: [.unsafeFlags(["-Xlinker", "--export-dynamic-symbol=d_printf"])]),
        // The Linux file calls Swift's Glibc module does not expose (sync_file_range).
        .target(name: "CFileIO", path: "Sources/CFileIO"),
        // SHA-256 with the x86 SHA extensions. Optimised in debug builds too: unoptimised
        // intrinsics are ten times slower, and the tests replicate real files.
        .target(name: "CHash", path: "Sources/CHash", cSettings: [.unsafeFlags(["-O2"])]),

        // What every module shares: the error protocol.
        .target(name: "StandbyBase", swiftSettings: strict),

        // Leaf modules: they take plain values, never the topology.
        .target(
            name: "StandbyTransport",
            // CGSSAPI: the SMB Kerberos login's tickets, acquired from the keytab.
            dependencies: [
                "StandbyBase", "CCurl", "CSMBClient", "CSMBClientHooks", "CGSSAPI",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "StandbyDNS",
            dependencies: ["StandbyBase", "CLDNS", "CGSSAPI", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .target(
            name: "StandbyProbes",
            dependencies: [
                "StandbyBase", "StandbyTransport", "StandbyDNS", "CTLS",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "StandbyReplication",
            dependencies: [
                "StandbyBase", "StandbyTransport", "CFileIO", "CHash",
                .product(name: "GRDB", package: "GRDB.swift"),
                // SQLite's own calls, for the catalog's hottest statement (GRDB's statement,
                // bound without boxing each value).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),

        // The topology, the planner, the failover engine and its journal.
        .target(
            name: "StandbyCore",
            dependencies: [
                "StandbyBase", "StandbyTransport", "StandbyDNS", "StandbyProbes", "StandbyReplication",
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict),
        // `standby run`: the scheduled service, its HTTP endpoint (metrics, status page).
        .target(
            name: "StandbyService",
            dependencies: [
                "StandbyBase", "StandbyCore", "StandbyProbes", "StandbyReplication", "StandbyTransport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "StandbyCLI",
            dependencies: [
                // The CLI renders the leaf modules' own results and errors, so it names them.
                "StandbyBase", "StandbyCore", "StandbyService", "StandbyReplication", "StandbyDNS", "StandbyProbes",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .executableTarget(name: "standby", dependencies: ["StandbyCLI"], swiftSettings: strict),

        // Real servers on loopback (named, knotd, nginx, sshd, kamailio) for the tests and the demo.
        .target(name: "StandbyLab", dependencies: ["CFileIO"], swiftSettings: strict),
        .executableTarget(
            name: "standby-lab",
            dependencies: [
                "StandbyLab",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),

        // Benchmarks: `swift run -c release standby-bench <area>` prints the figures of BENCHMARKS.md.
        .executableTarget(
            name: "standby-bench",
            dependencies: [
                "StandbyReplication", "StandbyDNS", "StandbyProbes", "StandbyTransport", "StandbyLab",
                // The cluster bench's journals and etcd client.
                "StandbyCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),

        .testTarget(
            name: "StandbyTransportTests",
            dependencies: ["StandbyTransport", "StandbyLab", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .testTarget(
            name: "StandbyDNSTests",
            dependencies: ["StandbyDNS", "StandbyLab", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .testTarget(
            name: "StandbyProbesTests",
            dependencies: ["StandbyProbes", "StandbyLab", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .testTarget(
            name: "StandbyReplicationTests",
            dependencies: [
                "StandbyBase", "StandbyReplication", "StandbyTransport", "StandbyLab",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "StandbyCoreTests",
            dependencies: [
                "StandbyCore", "StandbyDNS", "StandbyProbes", "StandbyTransport", "StandbyLab",
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.copy("Fixtures")], swiftSettings: strict),
        .testTarget(
            name: "StandbyServiceTests",
            dependencies: [
                "StandbyService", "StandbyCore", "StandbyReplication", "StandbyLab",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "StandbyCLITests", dependencies: ["StandbyLab"], swiftSettings: strict),
    ]
)
