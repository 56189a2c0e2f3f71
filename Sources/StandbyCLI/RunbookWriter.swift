import Foundation
import StandbyCore

/// Writes the runbook of a deployment: the topology as it is in its file now, each set's
/// data-loss window from the store's catalog, and the drills from the state directory.
enum RunbookWriter {
    /// Builds the runbook and writes it to `path` (through a temporary file and a rename, so a
    /// reader never finds half a page). Reading the state creates nothing that is not there.
    static func write(
        topology: Topology, site: String, stateDirectory: StateDirectory, to path: String, now: Date
    ) async throws -> Runbook {
        let rows = try await StatusCommand.setRows(topology, state: stateDirectory, now: now)
        let sets = rows.map { row in
            Runbook.SetWindow(
                name: row.name, kind: row.kind, rpoSeconds: row.rpoSeconds, version: row.newestVersion,
                capturedAt: row.capturedAt, lossWindowSeconds: row.ageSeconds, breached: row.breached)
        }
        var drills: [Runbook.DrillLine] = []
        if FileManager.default.fileExists(atPath: stateDirectory.file("state.sqlite")) {
            let log = DrillLog(store: try StateStore(directory: stateDirectory))
            for drill in try log.drills(deployment: topology.deployment).prefix(10) {
                let result = drill.finishedAt == nil ? "unfinished" : (drill.succeeded == true ? "passed" : "failed")
                let detail = [drill.summary, drill.failed].compactMap { $0 }.filter { !$0.isEmpty }
                    .joined(separator: "; ")
                drills.append(
                    Runbook.DrillLine(
                        id: drill.id ?? 0, startedAt: drill.startedAt, lead: drill.lead, result: result,
                        detail: detail))
            }
        }
        let runbook = try Runbook.build(
            topology: topology, site: site, stateDirectory: stateDirectory, sets: sets, drills: drills, now: now)
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let temporary = path + ".tmp"
        try Data(runbook.html().utf8).write(to: URL(fileURLWithPath: temporary))
        if rename(temporary, path) != 0 {
            throw CommandExit(
                .failed, "standby: cannot write the runbook to \(path): \(String(cString: strerror(errno)))")
        }
        return runbook
    }
}
