import ArgumentParser
import Foundation
import Logging
import StandbyCore
import StandbyReplication
import StandbyTransport

#if canImport(Glibc)
    import Glibc
#endif

/// What replicate, publish, verify and restore share: how a replication error becomes an exit
/// status, and the progress line on a terminal. (Source credentials: `ReplicationJob`.)
enum ReplicationCLI {
    static var logger: Logger {
        Logger(label: "standby.replication")
    }

    static func openStore(_ topology: Topology, state: StateDirectory) throws -> ReplicationStore {
        try state.create()
        return try ReplicationStore.open(directory: state.store(for: topology), logger: logger)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// A one-line progress display on stderr (bytes, rate, ETA), only when stderr is a terminal:
/// on a pipe or in a log it would be noise.
final class ProgressLine: @unchecked Sendable {
    private let lock = NSLock()
    private var shown = false
    let enabled: Bool

    init() {
        enabled = isatty(STDERR_FILENO) == 1
    }

    func show(_ progress: ReplicationProgress) {
        guard enabled else { return }
        let percent = progress.totalBytes > 0 ? Double(progress.processedBytes) * 100 / Double(progress.totalBytes) : 0
        let eta = progress.remaining.map { String(format: "ETA %.0f s", ReplicationCLI.seconds($0)) } ?? ""
        let line = String(
            format: "\r\u{1B}[K%@ %@ %5.1f%% %@/%@ %@/s %@ (received %@)", progress.set, progress.file, percent,
            ByteCount.text(progress.processedBytes), ByteCount.text(progress.totalBytes),
            ByteCount.text(Int64(progress.rate)), eta, ByteCount.text(progress.receivedBytes))
        lock.lock()
        shown = true
        FileHandle.standardError.write(Data(line.utf8))
        lock.unlock()
    }

    func clear() {
        lock.lock()
        defer { lock.unlock() }
        guard shown else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        shown = false
    }
}
