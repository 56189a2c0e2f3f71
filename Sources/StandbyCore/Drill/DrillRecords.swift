import Foundation
import GRDB
import StandbyBase

/// One drill in the state database (`drill`, extended by migration v3): when, who, whether it
/// passed, what failed, and the directory it worked in while it ran.
public struct DrillRecord: Sendable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "drill"

    public var id: Int64?
    public var startedAt: Date
    public var finishedAt: Date?
    public var lead: String
    /// nil while the drill runs (or after it was killed, until the next drill marks it abandoned).
    public var succeeded: Bool?
    public var summary: String?
    public var deployment: String?
    public var directory: String?
    public var pid: Int?
    public var host: String?
    /// What failed, one line per failed stage.
    public var failed: String?

    public init(
        id: Int64? = nil, startedAt: Date, finishedAt: Date? = nil, lead: String, succeeded: Bool? = nil,
        summary: String? = nil, deployment: String?, directory: String? = nil, pid: Int? = nil, host: String? = nil,
        failed: String? = nil
    ) {
        self.id = id
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.lead = lead
        self.succeeded = succeeded
        self.summary = summary
        self.deployment = deployment
        self.directory = directory
        self.pid = pid
        self.host = host
        self.failed = failed
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    public var elapsedSeconds: Double? { finishedAt.map { $0.timeIntervalSince(startedAt) } }
}

/// One stage of a drill: restore, steps, dns-check, dns-drill-zone, cleanup.
public struct DrillStage: Sendable, Codable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "drill_stage"

    public enum State: String, Sendable, Codable { case running, succeeded, failed, skipped }

    public var drillId: Int64
    public var seq: Int
    public var name: String
    public var state: State
    public var startedAt: Date
    public var finishedAt: Date?
    public var detail: String?

    public var seconds: Double? { finishedAt.map { $0.timeIntervalSince(startedAt) } }
}

/// A drill with its stages, as `drill` prints it and `report --drill` renders it.
public struct DrillReport: Sendable, Codable {
    public var drill: DrillRecord
    public var stages: [DrillStage]

    public var text: String {
        var lines: [String] = []
        let verdict: String =
            switch drill.succeeded {
            case true?: "passed"
            case false?: "FAILED"
            case nil: "not finished"
            }
        lines.append(
            "Drill \(drill.id.map(String.init) ?? "?") of \(drill.deployment ?? "?") by \(drill.lead), started \(RunReport.time(drill.startedAt)): \(verdict)"
                + (drill.elapsedSeconds.map { " in \(RunReport.span($0))" } ?? ""))
        for stage in stages {
            let time = stage.seconds.map { String(format: "%7.2fs", $0) } ?? "      -"
            lines.append(
                "  \(stage.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(stage.state.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(time)"
            )
            for line in (stage.detail ?? "").split(separator: "\n") { lines.append("      \(line)") }
        }
        if let failed = drill.failed, !failed.isEmpty {
            lines.append("What failed:")
            for line in failed.split(separator: "\n") { lines.append("  \(line)") }
        }
        if let summary = drill.summary { lines.append(summary) }
        return lines.joined(separator: "\n")
    }
}

/// The drills in the state store.
public struct DrillLog: Sendable {
    public let store: StateStore

    public init(store: StateStore) { self.store = store }

    func write<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try store.queue.write(body)
        } catch {
            throw DrillError(.journal, "\(store.path): cannot \(what): \(error)")
        }
    }

    func read<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try store.queue.read(body)
        } catch {
            throw DrillError(.journal, "\(store.path): cannot \(what): \(error)")
        }
    }

    public func start(_ drill: DrillRecord) throws -> DrillRecord {
        try write("record the drill start") { db in
            var drill = drill
            try drill.insert(db)
            drill.id = db.lastInsertedRowID
            return drill
        }
    }

    public func update(_ drill: DrillRecord) throws {
        try write("record drill \(drill.id ?? 0)") { db in try drill.update(db) }
    }

    public func save(_ stage: DrillStage) throws {
        try write("record drill stage \(stage.name)") { db in try stage.save(db) }
    }

    /// Drills that never finished: killed, or still running in another process.
    public func unfinished() throws -> [DrillRecord] {
        try read("read the drills") { db in
            try DrillRecord.filter(Column("finishedAt") == nil).order(Column("id")).fetchAll(db)
        }
    }

    public func drills(deployment: String) throws -> [DrillRecord] {
        try read("read the drills") { db in
            try DrillRecord.filter(Column("deployment") == deployment || Column("deployment") == nil)
                .order(Column("id").desc).fetchAll(db)
        }
    }

    public func report(id: Int64) throws -> DrillReport? {
        try read("read drill \(id)") { db in
            guard let drill = try DrillRecord.fetchOne(db, key: id) else { return nil }
            let stages = try DrillStage.filter(Column("drillId") == id).order(Column("seq")).fetchAll(db)
            return DrillReport(drill: drill, stages: stages)
        }
    }
}

public struct DrillError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable { case journal, refused, failed }
    public var code: Code
    public var message: String
    public var description: String { message }

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
}

extension DrillError: StandbyFailure {
    public var outcome: FailureOutcome { code == .refused ? .refused : .failed }
}
