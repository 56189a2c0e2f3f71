import Foundation
import GRDB

/// The current verdict of a site and when it began.
public struct VerdictSince: Sendable, Hashable, Codable {
    public var site: ProbeSite
    public var verdict: SiteVerdict
    public var since: Date
    public var detail: String
}

/// The watcher's record of every probe result and every transition, in its own SQLite database
/// (`health.sqlite` in the state directory). WAL, so `standby status` reads while the watcher writes.
public final class HealthHistory: Sendable {
    public let path: String
    private let pool: DatabasePool

    public static let fileName = "health.sqlite"

    /// Opens (creating and migrating if needed) `health.sqlite` in `directory`.
    public init(directory: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ProbeError(.history, "cannot create the state directory \(directory)", underlying: error)
        }
        path = (directory as NSString).appendingPathComponent(Self.fileName)
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)  // the watcher and a `status` reader may meet
        configuration.label = "standby.health"
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw ProbeError(.history, "cannot open the health history \(path)", underlying: error)
        }
    }

    // Migrations are named and never edited once shipped; a change is a new migration.
    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: probe results and transitions") { db in
            try db.execute(
                sql: """
                    CREATE TABLE probe_result (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        at REAL NOT NULL,
                        probe TEXT NOT NULL,
                        site TEXT NOT NULL,
                        kind TEXT NOT NULL,
                        target TEXT NOT NULL,
                        outcome TEXT NOT NULL,
                        latency_ms REAL NOT NULL,
                        detail TEXT NOT NULL
                    );
                    CREATE INDEX probe_result_at ON probe_result(at);
                    CREATE INDEX probe_result_probe_at ON probe_result(probe, at);
                    CREATE TABLE transition (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        at REAL NOT NULL,
                        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('probe', 'site')),
                        subject TEXT NOT NULL,
                        site TEXT NOT NULL,
                        from_state TEXT NOT NULL,
                        to_state TEXT NOT NULL,
                        detail TEXT NOT NULL
                    );
                    CREATE INDEX transition_kind_at ON transition(subject_kind, at);
                    """)
        }
        return migrator
    }

    /// Records a round's results and transitions in one transaction.
    public func record(results: [ProbeResult], transitions: [HealthTransition]) async throws {
        do {
            try await pool.write { db in
                for result in results {
                    try db.execute(
                        sql: """
                            INSERT INTO probe_result (at, probe, site, kind, target, outcome, latency_ms, detail)
                            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                            """,
                        arguments: [
                            result.at.timeIntervalSince1970, result.probe, result.site.rawValue, result.kind,
                            result.target, result.outcome.rawValue, result.latencyMilliseconds, result.detail,
                        ])
                }
                for transition in transitions {
                    try Self.insert(transition, db)
                }
            }
        } catch {
            throw ProbeError(.history, "cannot record probe results in \(path)", underlying: error)
        }
    }

    private static func insert(_ transition: HealthTransition, _ db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO transition (at, subject_kind, subject, site, from_state, to_state, detail)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                transition.at.timeIntervalSince1970, transition.isSiteVerdict ? "site" : "probe",
                transition.subjectName, transition.site.rawValue, transition.from, transition.to, transition.detail,
            ])
    }

    /// The verdict of `site` as last recorded, and since when; nil before the first settled verdict.
    public func currentVerdict(for site: ProbeSite) throws -> VerdictSince? {
        try read("read the current verdict") { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT at, to_state, detail FROM transition
                        WHERE subject_kind = 'site' AND subject = ? ORDER BY at DESC, id DESC LIMIT 1
                        """, arguments: [site.rawValue])
            else { return nil }
            let verdict = SiteVerdict(rawValue: row["to_state"]) ?? .unknown
            return VerdictSince(
                site: site, verdict: verdict, since: Date(timeIntervalSince1970: row["at"]), detail: row["detail"])
        }
    }

    /// The newest transitions first: site verdicts only unless `includeProbes`.
    public func transitions(limit: Int = 20, site: ProbeSite? = nil, includeProbes: Bool = false) throws
        -> [HealthTransition]
    {
        try read("read transitions") { db in
            var sql = "SELECT * FROM transition WHERE 1 = 1"
            var arguments: StatementArguments = []
            if !includeProbes { sql += " AND subject_kind = 'site'" }
            if let site {
                sql += " AND site = ?"
                arguments += [site.rawValue]
            }
            sql += " ORDER BY at DESC, id DESC LIMIT ?"
            arguments += [limit]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                let kind: String = row["subject_kind"]
                let subject: String = row["subject"]
                let site = ProbeSite(rawValue: row["site"]) ?? .primary
                return HealthTransition(
                    subject: kind == "site" ? .site(ProbeSite(rawValue: subject) ?? site) : .probe(subject), site: site,
                    from: row["from_state"], to: row["to_state"], at: Date(timeIntervalSince1970: row["at"]),
                    detail: row["detail"])
            }
        }
    }

    /// The newest results of one probe (or of all), newest first.
    public func results(probe: String? = nil, limit: Int = 100) throws -> [ProbeResult] {
        try read("read probe results") { db in
            var sql = "SELECT * FROM probe_result"
            var arguments: StatementArguments = []
            if let probe {
                sql += " WHERE probe = ?"
                arguments += [probe]
            }
            sql += " ORDER BY at DESC, id DESC LIMIT ?"
            arguments += [limit]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                let milliseconds: Double = row["latency_ms"]
                return ProbeResult(
                    probe: row["probe"], site: ProbeSite(rawValue: row["site"]) ?? .primary, kind: row["kind"],
                    target: row["target"], outcome: ProbeOutcome(rawValue: row["outcome"]) ?? .down,
                    latency: .microseconds(Int64(milliseconds * 1000)), detail: row["detail"],
                    at: Date(timeIntervalSince1970: row["at"]))
            }
        }
    }

    /// How many results are stored (for tests and the benchmark).
    public func resultCount() throws -> Int {
        try read("count results") { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM probe_result") ?? 0 }
    }

    /// Deletes results older than `resultsBefore` and probe transitions older than
    /// `transitionsBefore`. The newest verdict of each site is always kept, so "since when"
    /// survives pruning. Returns how many rows went.
    @discardableResult
    public func prune(resultsBefore: Date, transitionsBefore: Date) async throws -> Int {
        do {
            return try await pool.write { db in
                try db.execute(
                    sql: "DELETE FROM probe_result WHERE at < ?", arguments: [resultsBefore.timeIntervalSince1970])
                var removed = db.changesCount
                try db.execute(
                    sql: """
                        DELETE FROM transition WHERE at < ? AND id NOT IN (
                            SELECT MAX(id) FROM transition WHERE subject_kind = 'site' GROUP BY subject)
                        """, arguments: [transitionsBefore.timeIntervalSince1970])
                removed += db.changesCount
                return removed
            }
        } catch {
            throw ProbeError(.history, "cannot prune the health history \(path)", underlying: error)
        }
    }

    private func read<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.read(body)
        } catch {
            throw ProbeError(.history, "cannot \(what) from \(path)", underlying: error)
        }
    }
}
