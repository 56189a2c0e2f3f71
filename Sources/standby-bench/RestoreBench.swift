import ArgumentParser
import Foundation
import Logging
import StandbyLab
import StandbyReplication

#if canImport(Glibc)
    import Glibc
#endif

/// `standby-bench restore --size 1GiB --rounds 5`: the database-like backup of the replication
/// bench, replicated once into a store (file:// source), then in each round `cp` + `sync` of
/// the source file against `restore` of its version (every chunk's SHA-256 and the whole-file
/// SHA-256 checked, the file fsynced), one after the other. Before each contender, untimed:
/// the source and the packs are evicted from the page cache (`--cached` keeps them), `sync`,
/// 0.2 s. Restore runs in a child process, as `cp` does.
struct RestoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore", abstract: "Restore of a version against cp + sync of the same file.")

    @Option(help: "Size of the backup (8 KiB pages).")
    var size: String = "1GiB"
    @Option(help: "Rounds of cp + sync and restore.")
    var rounds = 5
    @Flag(help: "Leave the source and the packs in the page cache.")
    var cached = false
    @Option(help: "Directory for the lab (TMPDIR otherwise).")
    var workDirectory: String?

    func run() async throws {
        guard let bytes = parseSize(size), bytes >= 8192 else {
            throw ValidationError("cannot read the size \(size) (try 1GiB, 512MiB)")
        }
        if let workDirectory { setenv("TMPDIR", workDirectory, 1) }
        let bench = ReplicationBench()
        let lab = try LabDirectory(prefix: "standby-bench-restore")
        defer { lab.remove() }
        let source = try lab.directory("src") + "/db.bak"
        let pages = Int(bytes / 8192)
        print("Generating \(pages) pages of 8 KiB (\(formatBytes(Int64(pages) * 8192))) in \(lab.path)")
        try bench.generateDatabase(source, pages: pages)
        bench.setTime(source, 1_700_000_000)
        let store = lab.file("store")
        let logger = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let repository = try ReplicationStore.open(directory: store, logger: logger)
        _ = try await repository.replicate(
            set: SetSpec(name: "db", sources: [URL(fileURLWithPath: source)]),
            options: ReplicateOptions(useIndex: false))
        let executable =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        print("round   cp + sync   restore   restore / cp + sync   restore peak memory")
        var ratios: [Double] = []
        for round in 1...rounds {
            let cpTarget = lab.file("cp-\(round)")
            let restoreTarget = lab.file("restore-\(round)")
            try FileManager.default.createDirectory(atPath: cpTarget, withIntermediateDirectories: true)
            if !cached { try bench.evict(source) }
            let cp = try bench.measure(["/bin/sh", "-c", "cp \"$0\" \"$1\" && sync", source, cpTarget + "/db.bak"])
            if !cached { try bench.evictTree(store) }
            bench.settle()
            let result = lab.file("restore-\(round).json")
            let started = ContinuousClock.now
            let (status, peak) = try spawnAndWait(
                [executable, "restore-worker", "--store", store, "--to", restoreTarget], output: result)
            let restore = seconds(ContinuousClock.now - started)
            guard status == 0 else {
                let text = (try? String(contentsOfFile: result, encoding: .utf8)) ?? ""
                throw ValidationError("restore failed (status \(status)): \(text)")
            }
            guard FileManager.default.contentsEqual(atPath: restoreTarget + "/db.bak", andPath: source) else {
                throw ValidationError("round \(round): the restored file differs from the source")
            }
            ratios.append(restore / cp.seconds)
            print(
                String(format: "%5d   %7.2f s   %5.2f s   %17.2f×   ", round, cp.seconds, restore, restore / cp.seconds)
                    + formatBytes(peak))
            try? FileManager.default.removeItem(atPath: cpTarget)
            try? FileManager.default.removeItem(atPath: restoreTarget)
        }
        let sorted = ratios.sorted()
        print(String(format: "median restore / cp + sync: %.2f×", sorted[sorted.count / 2]))
    }
}

struct RestoreWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore-worker", abstract: "One restore for the restore benchmark.", shouldDisplay: false)

    @Option var store: String
    @Option var to: String

    func run() async throws {
        let logger = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let repository = try ReplicationStore.open(directory: store, logger: logger)
        _ = try await repository.restore(set: "db", to: to)
    }
}
