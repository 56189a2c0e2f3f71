import Foundation
import GRDB
import StandbyBase

#if canImport(Glibc)
    import Glibc
#endif

/// The controller's own SQLite database (`state.sqlite` in the state directory): the failover
/// journal, drills and decisions. WAL so readers (`status`, `report`) never block a running
/// failover; a busy timeout so two commands wait for each other instead of failing.
public final class StateStore: Sendable {
    public let path: String
    public let queue: DatabaseQueue

    public init(directory: StateDirectory) throws {
        try directory.create()
        path = directory.file("state.sqlite")
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.journalMode = .wal
        do {
            queue = try DatabaseQueue(path: path, configuration: configuration)
            // Two commands opening a fresh state directory at once must not both run the
            // migrations: an exclusive flock (released with the descriptor, or the process) orders them.
            let lockPath = directory.file("state.migrate.lock")
            let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw StateError(path: lockPath, message: "cannot open the migration lock") }
            defer { close(fd) }
            while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
            try Self.migrator.migrate(queue)
        } catch let error as DatabaseError {
            throw StateError(path: path, message: "cannot open the state database: \(error.message ?? "\(error)")")
        }
        try Self.refuseNewer(queue, path: path)
    }

    /// Migrations are named, run once each in their own transaction, and never edited once shipped:
    /// add a new one instead.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: meta and drills") { db in
            try db.create(table: "meta") { t in
                t.primaryKey("key", .text)
                t.column("value", .text).notNull()
            }
            try db.execute(sql: "INSERT INTO meta(key, value) VALUES ('format', '1')")
            try db.create(table: "drill") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("startedAt", .datetime).notNull()
                t.column("finishedAt", .datetime)
                t.column("lead", .text).notNull()
                t.column("succeeded", .boolean)
                t.column("summary", .text)
            }
        }
        migrator.registerMigration("v2: failover journal") { db in
            try FailoverJournal.migrationV2(db)
        }
        migrator.registerMigration("service v1: job times") { db in
            try ServiceJournal.migrationV1(db)
        }
        migrator.registerMigration("v3: drill stages and failback") { db in
            try db.alter(table: "drill") { t in
                t.add(column: "deployment", .text)
                /// The drill directory while the drill runs; removed at its end or by the next drill.
                t.add(column: "directory", .text)
                t.add(column: "pid", .integer)
                t.add(column: "host", .text)
                /// What failed, in a line per stage.
                t.add(column: "failed", .text)
            }
            try db.create(table: "drill_stage") { t in
                t.column("drillId", .integer).notNull().references("drill", onDelete: .cascade)
                t.column("seq", .integer).notNull()
                t.column("name", .text).notNull()
                t.column("state", .text).notNull()
                t.column("startedAt", .datetime).notNull()
                t.column("finishedAt", .datetime)
                t.column("detail", .text)
                t.primaryKey(["drillId", "seq"])
            }
            try db.alter(table: "failover_run") { t in t.add(column: "returnsFrom", .text) }
        }
        migrator.registerMigration("v4: step processes") { db in
            try FailoverJournal.migrationV4(db)
        }
        return migrator
    }

    /// The newest format this build understands; a database written by a newer Standby is refused
    /// rather than misread.
    static let format = 1

    static func refuseNewer(_ queue: DatabaseQueue, path: String) throws {
        let stored = try queue.read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'format'")
        }
        if let stored, let number = Int(stored), number > format {
            throw StateError(
                path: path,
                message:
                    "the state database was written by a newer Standby (format \(number), this build reads \(format)); upgrade standby"
            )
        }
    }

    /// The newest successful drill, for `check`'s drill-overdue finding.
    public func lastSuccessfulDrill() throws -> Date? {
        try queue.read { db in
            try Date.fetchOne(db, sql: "SELECT MAX(finishedAt) FROM drill WHERE succeeded = 1")
        }
    }
}

public struct StateError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

extension StateError: StandbyFailure {
    public var outcome: FailureOutcome { .failed }
    public var place: String? { path }
}
