import Foundation
import GRDB

/// The job times of `standby run`, in the state store (`service_job`), so that a restarted service
/// continues where it was instead of starting every schedule over.
public struct ServiceJournal: Sendable {
    public let store: StateStore
    /// Cluster mode: the job times live in etcd, written only by the leader (`ClusterJobTimes`).
    public let cluster: ClusterJobTimes?

    public init(store: StateStore, cluster: ClusterJobTimes? = nil) {
        self.store = store
        self.cluster = cluster
    }

    /// The `service v1: job times` migration (registered by `StateStore`).
    static func migrationV1(_ db: Database) throws {
        try db.create(table: "service_job") { t in
            t.primaryKey("key", .text)
            t.column("lastStarted", .datetime)
            t.column("lastFinished", .datetime)
            t.column("lastSucceeded", .datetime)
            t.column("failures", .integer).notNull().defaults(to: 0)
            t.column("detail", .text).notNull().defaults(to: "")
        }
    }

    public func records() throws -> [String: JobRecord] {
        if let cluster { return try cluster.records() }
        return try wrap("read the service's job times") {
            try store.queue.read { db in
                let rows = try Row.fetchAll(db, sql: "SELECT * FROM service_job")
                var records: [String: JobRecord] = [:]
                for row in rows {
                    let record = JobRecord(
                        key: row["key"], lastStarted: row["lastStarted"], lastFinished: row["lastFinished"],
                        lastSucceeded: row["lastSucceeded"], failures: row["failures"], detail: row["detail"])
                    records[record.key] = record
                }
                return records
            }
        }
    }

    /// Committed before the job's first side effect.
    public func started(_ key: String, at date: Date) throws {
        if let cluster {
            return try cluster.change(key) { $0.lastStarted = date }
        }
        try wrap("record the start of \(key)") {
            try store.queue.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO service_job(key, lastStarted) VALUES (?, ?)
                        ON CONFLICT(key) DO UPDATE SET lastStarted = excluded.lastStarted
                        """, arguments: [key, date])
            }
        }
    }

    /// Committed after the job ended, successfully or not.
    public func finished(_ key: String, at date: Date, succeeded: Bool, detail: String) throws {
        if let cluster {
            return try cluster.change(key) { record in
                record.lastFinished = date
                record.detail = detail
                if succeeded {
                    record.lastSucceeded = date
                    record.failures = 0
                } else {
                    record.failures += 1
                }
            }
        }
        try wrap("record the end of \(key)") {
            try store.queue.write { db in
                if succeeded {
                    try db.execute(
                        sql: """
                            INSERT INTO service_job(key, lastStarted, lastFinished, lastSucceeded, failures, detail)
                            VALUES (?, ?, ?, ?, 0, ?)
                            ON CONFLICT(key) DO UPDATE SET lastFinished = excluded.lastFinished,
                              lastSucceeded = excluded.lastSucceeded, failures = 0, detail = excluded.detail
                            """, arguments: [key, date, date, date, detail])
                } else {
                    try db.execute(
                        sql: """
                            INSERT INTO service_job(key, lastStarted, lastFinished, failures, detail)
                            VALUES (?, ?, ?, 1, ?)
                            ON CONFLICT(key) DO UPDATE SET lastFinished = excluded.lastFinished,
                              failures = failures + 1, detail = excluded.detail
                            """, arguments: [key, date, date, detail])
                }
            }
        }
    }

    /// A job stopped by a graceful shutdown before it was done: it stays "interrupted" (started,
    /// not finished) so that the next start continues it first.
    public func stopped(_ key: String, detail: String) throws {
        if let cluster {
            return try cluster.change(key) { $0.detail = detail }
        }
        try wrap("record the stop of \(key)") {
            try store.queue.write { db in
                try db.execute(sql: "UPDATE service_job SET detail = ? WHERE key = ?", arguments: [detail, key])
            }
        }
    }

    private func wrap<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as DatabaseError {
            throw StateError(path: store.path, message: "cannot \(what): \(error.message ?? "\(error)")")
        }
    }
}
