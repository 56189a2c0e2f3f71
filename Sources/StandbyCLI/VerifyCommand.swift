import ArgumentParser
import Foundation
import StandbyCore
import StandbyReplication

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the store against its catalog; with --read-data re-read and re-hash every chunk.",
        discussion: """
            A missing or corrupt chunk is reported with the set versions it breaks; those versions \
            are no longer restored or counted for RPO. Exit 1 when anything is broken.
            """)

    @OptionGroup var site: SiteOptions
    @OptionGroup var output: OutputOptions

    @Flag(help: "Read back and re-hash every chunk.")
    var readData = false

    @Option(help: "Read back and re-hash this percentage of chunks, chosen at random.")
    var sample: Double?

    func validate() throws {
        if readData && sample != nil { throw ValidationError("--read-data and --sample exclude each other") }
        if let sample, !(sample > 0 && sample <= 100) { throw ValidationError("--sample takes a percentage, 0-100") }
    }

    struct Output: Encodable {
        struct Problem: Encodable {
            var kind: String
            var chunk: String
            var pack: String?
            var detail: String
            var versions: [String]
        }

        var versionsChecked: Int
        var chunksChecked: Int
        var chunksRead: Int
        var bytesRead: Int64
        var problems: [Problem]
        var brokenVersions: [String]
    }

    func run() async throws {
        let topology = try site.loadTopology()
        let store = try ReplicationCLI.openStore(topology, state: site.stateDirectory(for: topology))
        let report = try await store.verify(readData: readData || sample != nil, samplePercent: sample)
        if output.json {
            try JSON.print(
                Output(
                    versionsChecked: report.versionsChecked, chunksChecked: report.chunksChecked,
                    chunksRead: report.chunksRead, bytesRead: report.bytesRead,
                    problems: report.problems.map {
                        .init(
                            kind: $0.kind.rawValue, chunk: $0.chunk, pack: $0.pack, detail: $0.detail,
                            versions: $0.versions.map(\.description))
                    }, brokenVersions: report.brokenVersions.map(\.description)))
        } else {
            for problem in report.problems {
                let versions = problem.versions.map(\.description).joined(separator: ", ")
                print(
                    "\(problem.kind.rawValue) chunk \(problem.chunk.prefix(16)): \(problem.detail); breaks \(versions)")
            }
            print(
                "\(report.versionsChecked) versions, \(report.chunksChecked) chunks checked, \(report.chunksRead) read back (\(ByteCount.text(report.bytesRead))): "
                    + (report.isClean
                        ? "clean"
                        : "\(report.problems.count) broken chunks, versions broken: \(report.brokenVersions.map(\.description).joined(separator: ", "))")
            )
        }
        if !report.isClean { throw CommandExit(.failed) }
    }
}
