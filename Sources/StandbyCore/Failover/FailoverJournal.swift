import Foundation
import GRDB

/// The failover journal in the state database. Every transition is its own committed
/// transaction, so that a controller killed at any instant leaves a journal that says exactly
/// which side effects may have happened.
///
/// In cluster mode (`cluster` set) the same records live in etcd instead (`ClusterJournal`), each
/// write fenced by the leader's revision; the SQLite tables are then not used for runs.
public struct FailoverJournal: Sendable {
    public let store: StateStore
    public let cluster: ClusterJournal?

    public init(store: StateStore, cluster: ClusterJournal? = nil) {
        self.store = store
        self.cluster = cluster
    }

    var queue: DatabaseQueue { store.queue }

    /// The tables of migration "v2: failover journal". Shipped: never edit, add a migration instead.
    static func migrationV2(_ db: Database) throws {
        try db.create(table: "failover_run") { t in
            t.primaryKey("id", .text)
            t.column("deployment", .text).notNull()
            t.column("scenario", .text).notNull()
            t.column("direction", .text).notNull()
            t.column("reason", .text).notNull()
            t.column("lead", .text).notNull()
            t.column("planned", .boolean).notNull()
            t.column("state", .text).notNull()
            t.column("declaredAt", .datetime).notNull()
            t.column("finishedAt", .datetime)
            t.column("plan", .text).notNull()
            t.column("dnsReplaced", .text)
            t.column("note", .text)
        }
        try db.create(table: "failover_step") { t in
            t.column("runId", .text).notNull().references("failover_run", onDelete: .cascade)
            t.column("seq", .integer).notNull()
            t.column("stage", .integer).notNull()
            t.column("stageKind", .text).notNull()
            t.column("service", .text).notNull()
            t.column("stepId", .text).notNull()
            t.column("kind", .text).notNull()
            t.column("summary", .text).notNull()
            t.column("idempotent", .boolean).notNull()
            t.column("retries", .integer).notNull()
            t.column("state", .text).notNull()
            t.column("attempts", .integer).notNull()
            t.column("startedAt", .datetime)
            t.column("finishedAt", .datetime)
            t.column("waitingFor", .text)
            t.column("output", .text)
            t.column("error", .text)
            t.column("result", .text)
            t.column("pid", .integer)
            t.primaryKey(["runId", "seq"])
            t.uniqueKey(["runId", "stepId"])
        }
        try db.create(table: "failover_decision") { t in
            t.autoIncrementedPrimaryKey("id")
            t.column("runId", .text).notNull().references("failover_run", onDelete: .cascade)
            t.column("at", .datetime).notNull()
            t.column("kind", .text).notNull()
            t.column("lead", .text).notNull()
            t.column("reason", .text).notNull()
            t.column("target", .text)
        }
        try db.create(table: "failover_set") { t in
            t.column("runId", .text).notNull().references("failover_run", onDelete: .cascade)
            t.column("name", .text).notNull()
            t.column("core", .boolean).notNull()
            t.column("version", .text)
            t.column("capturedAt", .datetime)
            t.column("lossWindowSeconds", .double)
            t.column("problem", .text)
            t.primaryKey(["runId", "name"])
        }
        try db.create(table: "failover_lease") { t in
            t.primaryKey("deployment", .text)
            t.column("runId", .text).notNull()
            t.column("lead", .text).notNull()
            t.column("pid", .integer).notNull()
            t.column("host", .text).notNull()
            t.column("since", .datetime).notNull()
        }
    }

    /// Migration "v4: step processes": an exec step's process is known by its pid, start time and
    /// group, so a later controller can tell whether it still runs. Never edit it once shipped.
    static func migrationV4(_ db: Database) throws {
        try db.alter(table: "failover_step") { t in
            t.add(column: "processStartTicks", .integer)
            t.add(column: "processGroup", .integer)
            t.add(column: "attemptStartedAt", .datetime)
        }
    }

    func write<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try queue.write(body)
        } catch let error as FailoverError {
            throw error
        } catch {
            throw FailoverError(.journal, "\(store.path): cannot \(what): \(error)")
        }
    }

    func read<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try queue.read(body)
        } catch {
            throw FailoverError(.journal, "\(store.path): cannot \(what): \(error)")
        }
    }

    // MARK: Lease

    /// The lease as it stands, and the run it names when that run exists.
    public func lease(deployment: String) throws -> (lease: FailoverLease, run: FailoverRun?)? {
        if let cluster { return try cluster.lease() }
        return try read("read the lease") { db in
            guard let lease = try FailoverLease.fetchOne(db, key: deployment) else { return nil }
            return (lease, try FailoverRun.fetchOne(db, key: lease.runId))
        }
    }

    /// The lease, read without opening the store for writing (and so without running migrations
    /// that another process may be running): for naming the holder of a busy controller lock.
    public static func peekLease(directory: StateDirectory, deployment: String) -> (
        lease: FailoverLease, run: FailoverRun?
    )? {
        let path = directory.file("state.sqlite")
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(2)
        guard let queue = try? DatabaseQueue(path: path, configuration: configuration) else { return nil }
        return try? queue.read { db in
            guard try db.tableExists(FailoverLease.databaseTableName),
                let lease = try FailoverLease.fetchOne(db, key: deployment)
            else { return nil }
            return (lease, try FailoverRun.fetchOne(db, key: lease.runId))
        }
    }

    /// Takes the lease for a new run, or returns the lease that blocks it. A lease whose run never
    /// got declared (the controller died in preflight) is stale once the caller holds the
    /// controller lock, and is taken over.
    public func takeLease(_ lease: FailoverLease) throws -> (lease: FailoverLease, run: FailoverRun?)? {
        if let cluster { return try cluster.takeLease(lease) }
        return try write("take the lease") { db in
            if let held = try FailoverLease.fetchOne(db, key: lease.deployment) {
                let run = try FailoverRun.fetchOne(db, key: held.runId)
                if let run, run.state.isActive { return (held, run) }
            }
            if let active = try FailoverRun.filter(
                Column("deployment") == lease.deployment
                    && [
                        FailoverRun.State.running.rawValue, FailoverRun.State.waiting.rawValue,
                        FailoverRun.State.halted.rawValue,
                    ]
                    .contains(Column("state"))
            ).fetchOne(db) {
                let holder = FailoverLease(
                    deployment: lease.deployment, runId: active.id, lead: active.lead, pid: 0, host: "?",
                    since: active.declaredAt)
                return (holder, active)
            }
            try lease.save(db)
            return nil
        }
    }

    /// Drops the lease if it still names `runId`.
    public func releaseLease(deployment: String, runId: String) throws {
        if let cluster { return try cluster.releaseLease(runId: runId) }
        try write("release the lease") { db in
            try db.execute(
                sql: "DELETE FROM failover_lease WHERE deployment = ? AND runId = ?", arguments: [deployment, runId])
        }
    }

    /// A declaration that ended before its run existed (refused in preflight, not confirmed, or
    /// failed to record): the lease is dropped and the attempt remembered in one transaction, so
    /// that `resume` says the declaration did not complete instead of pointing at an older run.
    /// Kept in the `meta` table (one row per deployment, the newest attempt): no schema change.
    public func abandonDeclaration(_ attempt: AbandonedDeclaration) throws {
        if let cluster { return try cluster.abandonDeclaration(attempt) }
        let text = String(decoding: try AbandonedDeclaration.encoder.encode(attempt), as: UTF8.self)
        try write("record the declaration of \(attempt.runId) as not completed") { db in
            try db.execute(
                sql: "DELETE FROM failover_lease WHERE deployment = ? AND runId = ?",
                arguments: [attempt.deployment, attempt.runId])
            try db.execute(
                sql: "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                arguments: [AbandonedDeclaration.key(attempt.deployment), text])
        }
    }

    /// The newest declaration of `deployment` that ended before its run existed, if any.
    public func abandonedDeclaration(deployment: String) throws -> AbandonedDeclaration? {
        if let cluster { return try cluster.abandonedDeclaration() }
        return try read("read the last declaration") { db in
            guard
                let text = try String.fetchOne(
                    db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [AbandonedDeclaration.key(deployment)])
            else { return nil }
            return try? AbandonedDeclaration.decoder.decode(AbandonedDeclaration.self, from: Data(text.utf8))
        }
    }

    /// Records that this process now drives the run.
    public func touchLease(deployment: String, runId: String, pid: Int, host: String) throws {
        if let cluster { return try cluster.touchLease(runId: runId, pid: pid, host: host) }
        try write("update the lease") { db in
            try db.execute(
                sql: "UPDATE failover_lease SET pid = ?, host = ? WHERE deployment = ? AND runId = ?",
                arguments: [pid, host, deployment, runId])
        }
    }

    // MARK: Runs

    /// Persists the run, every step in plan order, the sets as seen and the declaration, in one
    /// transaction: either all of it exists or none.
    /// The run, its steps and sets, and the decisions that made it (the declaration, and a
    /// `dns-later`), in one transaction.
    public func declare(run: FailoverRun, steps: [RunStep], sets: [RunSet], decisions: [RunDecision]) throws {
        if let cluster { return try cluster.declare(run: run, steps: steps, sets: sets, decisions: decisions) }
        try write("record the declaration of run \(run.id)") { db in
            try run.insert(db)
            for step in steps { try step.insert(db) }
            for set in sets { try set.insert(db) }
            for decision in decisions { try decision.insert(db) }
        }
    }

    public func declare(run: FailoverRun, steps: [RunStep], sets: [RunSet], decision: RunDecision) throws {
        try declare(run: run, steps: steps, sets: sets, decisions: [decision])
    }

    public func run(id: String) throws -> FailoverRun? {
        if let cluster { return try cluster.run(id: id) }
        return try read("read run \(id)") { db in try FailoverRun.fetchOne(db, key: id) }
    }

    /// The deployment's active run, else its newest.
    public func currentRun(deployment: String) throws -> FailoverRun? {
        if let cluster {
            let runs = try cluster.runs()
            return runs.first(where: { $0.state.isActive }) ?? runs.first
        }
        return try read("read the runs") { db in
            let runs = try FailoverRun.filter(Column("deployment") == deployment)
                .order(Column("declaredAt").desc).fetchAll(db)
            return runs.first(where: { $0.state.isActive }) ?? runs.first
        }
    }

    public func activeRun(deployment: String) throws -> FailoverRun? {
        try currentRun(deployment: deployment).flatMap { $0.state.isActive ? $0 : nil }
    }

    public func runs(deployment: String) throws -> [FailoverRun] {
        if let cluster { return try cluster.runs() }
        return try read("read the runs") { db in
            try FailoverRun.filter(Column("deployment") == deployment).order(Column("declaredAt").desc).fetchAll(db)
        }
    }

    public func steps(runId: String) throws -> [RunStep] {
        if let cluster { return try cluster.steps(runId: runId) }
        return try read("read the steps of run \(runId)") { db in
            try RunStep.filter(Column("runId") == runId).order(Column("seq")).fetchAll(db)
        }
    }

    /// Cluster mode: the node that executed each step, by step id; empty for the SQLite journal,
    /// where the one controller did.
    public func stepNodes(runId: String) throws -> [String: String] {
        try cluster?.stepNodes(runId: runId) ?? [:]
    }

    public func decisions(runId: String) throws -> [RunDecision] {
        if let cluster { return try cluster.decisions(runId: runId) }
        return try read("read the decisions of run \(runId)") { db in
            try RunDecision.filter(Column("runId") == runId).order(Column("id")).fetchAll(db)
        }
    }

    public func sets(runId: String) throws -> [RunSet] {
        if let cluster { return try cluster.sets(runId: runId) }
        return try read("read the sets of run \(runId)") { db in
            try RunSet.filter(Column("runId") == runId).order(Column("name")).fetchAll(db)
        }
    }

    public func update(_ step: RunStep) throws {
        if let cluster { return try cluster.update(step) }
        try write("record step \(step.stepId) as \(step.state.rawValue)") { db in try step.update(db) }
    }

    public func update(_ run: FailoverRun) throws {
        if let cluster { return try cluster.update(run) }
        try write("record run \(run.id) as \(run.state.rawValue)") { db in try run.update(db) }
    }

    public func record(_ decision: RunDecision) throws {
        if let cluster { return try cluster.record(decision) }
        try write("record the \(decision.kind) decision") { db in
            try decision.insert(db)
        }
    }

    /// Changes steps and records the decision that changed them in one transaction.
    public func decide(_ decision: RunDecision, steps: [RunStep], run: FailoverRun? = nil) throws {
        if let cluster { return try cluster.decide(decision, steps: steps, run: run) }
        try write("record the \(decision.kind) decision") { db in
            for step in steps { try step.update(db) }
            if let run { try run.update(db) }
            try decision.insert(db)
        }
    }
}
