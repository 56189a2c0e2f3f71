import ArgumentParser
import Foundation
import StandbyCore
import StandbyReplication

struct PublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Write a chunk index next to each backup file (run at the primary after the backup job).",
        discussion: """
            For FILE, writes FILE.standby-index, holding FILE's size, modification time, SHA-256 and \
            chunk list. A replicate that finds a matching index fetches only the chunks its store \
            lacks; a stale one is ignored. A directory stands for every file under it.
            """)

    @Argument(help: "Backup files or directories.")
    var paths: [String]

    @OptionGroup var output: OutputOptions
    @OptionGroup var logging: LoggingOptions

    struct Published: Encodable {
        var file: String
        var index: String
        var size: Int64
        var chunks: Int
        var indexBytes: Int64
    }

    func run() async throws {
        let results = try await Publisher.publish(paths: paths, logger: ReplicationCLI.logger)
        if output.json {
            try JSON.print(
                results.map {
                    Published(
                        file: $0.file, index: $0.indexPath, size: $0.fileSize, chunks: $0.chunkCount,
                        indexBytes: $0.indexBytes)
                })
        } else {
            for result in results {
                print(
                    "\(result.indexPath): \(result.chunkCount) chunks of \(ByteCount.text(result.fileSize)), index \(ByteCount.text(result.indexBytes))"
                )
            }
        }
    }
}
