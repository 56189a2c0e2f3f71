import ArgumentParser
import Foundation
import StandbyCore
import StandbyReplication

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Materialise a version of a backup set (newest verified by default) into a directory.",
        discussion: """
            Every chunk and every file's SHA-256 is checked; files are written under a temporary \
            name and renamed, with their source's modification time.
            """)

    @OptionGroup var site: SiteOptions

    @Argument(help: "The backup set.")
    var set: String

    @Option(help: "The directory to restore into.")
    var to: String

    @Option(help: "A version id (see replicate's output); default the newest verified.")
    var version: Int64?

    @OptionGroup var output: OutputOptions

    struct Output: Encodable {
        struct File: Encodable {
            var name: String
            var path: String
            var size: Int64
        }

        var set: String
        var version: Int64
        var capturedAt: Date?
        var files: [File]
        var bytes: Int64
    }

    func run() async throws {
        let topology = try site.loadTopology()
        guard topology.backupSet(named: set) != nil else {
            throw CommandExit(.badInput, "standby: no backup set named \(set) in \(topology.file)")
        }
        let store = try ReplicationCLI.openStore(topology, state: site.stateDirectory(for: topology))
        let report = try await store.restore(set: set, version: version, to: to)
        if output.json {
            try JSON.print(
                Output(
                    set: set, version: report.version.id, capturedAt: report.version.captured,
                    files: report.files.map { .init(name: $0.name, path: $0.path, size: $0.size) }, bytes: report.bytes)
            )
        } else {
            for file in report.files { print("\(file.path) (\(ByteCount.text(file.size)))") }
            print("\(set): version \(report.version.id) restored to \(to), \(ByteCount.text(report.bytes))")
        }
    }
}
