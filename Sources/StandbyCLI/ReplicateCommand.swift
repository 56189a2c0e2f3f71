import ArgumentParser
import Foundation
import StandbyCore
import StandbyReplication

struct ReplicateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replicate",
        abstract: "Copy the backup sets into the secondary's store: chunked, deduplicated, verified, resumable.",
        discussion: """
            Each set becomes one new version, visible only once all of it is stored and checked. \
            A published chunk index (standby publish) next to a source lets only the missing byte \
            ranges cross the network. Outside the primary's off-peak window the transfer is capped \
            at replication.peak_rate. Source credentials: STANDBY_SOURCE_USER/_PASSWORD or ~/.netrc; \
            sftp: STANDBY_SSH_KEY with STANDBY_SSH_KNOWN_HOSTS or STANDBY_SSH_HOST_SHA256. \
            Exit 1 when a set failed, 3 when another replicate holds the store.
            """)

    @OptionGroup var site: SiteOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var clock: ClockOptions

    @Option(name: .customLong("set"), help: "Replicate only this set (repeatable). Default: every set.")
    var sets: [String] = []

    @Flag(help: "Read whole files even where a chunk index is published.")
    var noIndex = false

    struct SetResult: Encodable {
        var set: String
        var version: Int64?
        var size: Int64?
        var newBytes: Int64?
        var bytesReceived: Int64?
        var filesByIndex: Int?
        var filesRead: Int?
        var seconds: Double?
        var capturedAt: Date?
        var droppedVersions: [Int64]?
        var rateLimit: Int64?
        var error: String?
    }

    func run() async throws {
        let topology = try site.loadTopology()
        let now = try clock.date()
        for name in sets where topology.backupSet(named: name) == nil {
            throw CommandExit(.badInput, "standby: no backup set named \(name) in \(topology.file)")
        }
        let chosen = sets.isEmpty ? topology.backupSets : topology.backupSets.filter { sets.contains($0.name) }
        let store = try ReplicationCLI.openStore(topology, state: site.stateDirectory(for: topology))
        let progress = ProgressLine()
        var results: [SetResult] = []
        var failures: [String] = []
        for set in chosen {
            var job: ReplicationJob
            do {
                job = try ReplicationJob(set: set, in: topology, at: now, useIndex: !noIndex)
            } catch {
                throw CommandExit(.badInput, "standby: \(error.description)")
            }
            let rateLimit = job.rateLimit
            if progress.enabled {
                job.options.progress = { @Sendable update in progress.show(update) }
            }
            do {
                let report = try await store.replicate(set: job.spec, options: job.options)
                progress.clear()
                let version = report.version
                results.append(
                    SetResult(
                        set: set.name, version: version.id, size: version.size, newBytes: version.newBytes,
                        bytesReceived: report.bytesReceived, filesByIndex: report.filesByIndex,
                        filesRead: report.filesRead, seconds: ReplicationCLI.seconds(report.elapsed),
                        capturedAt: version.captured, droppedVersions: report.droppedVersions, rateLimit: rateLimit))
                if !output.json {
                    let how = report.filesByIndex > 0 ? ", by index" : ""
                    print(
                        "\(set.name): version \(version.id), \(ByteCount.text(version.size)), \(ByteCount.text(version.newBytes)) new, \(ByteCount.text(report.bytesReceived)) received\(how), \(String(format: "%.1f", ReplicationCLI.seconds(report.elapsed))) s"
                            + (rateLimit.map { " (capped at \(ByteCount.text($0))/s: peak hours)" } ?? ""))
                }
            } catch let error as ReplicationError {
                progress.clear()
                // A store another command holds stops every set; any other failure is this set's.
                if error.outcome == .refused { throw error }
                failures.append(error.description)
                results.append(SetResult(set: set.name, rateLimit: rateLimit, error: error.description))
                if !output.json { printError("standby: \(error.description)") }
            }
        }
        if output.json { try JSON.print(results) }
        if !failures.isEmpty { throw CommandExit(.failed) }
    }
}
