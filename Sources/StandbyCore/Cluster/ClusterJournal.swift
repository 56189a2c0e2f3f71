import Foundation

/// The failover journal in etcd, for cluster mode: the same records as the SQLite journal (runs,
/// steps with their attempts, decisions, sets, the run lease), one JSON value per key
/// (`ClusterKeys`). Every write is one transaction that also compares the fence (the leader key's
/// and the lock's create revisions): a deposed controller's write fails with `deposed` and
/// changes nothing.
public struct ClusterJournal: Sendable {
    public let client: EtcdClient
    public let keys: ClusterKeys
    public let fence: ClusterFence

    public init(client: EtcdClient, keys: ClusterKeys, fence: ClusterFence) {
        self.client = client
        self.keys = keys
        self.fence = fence
    }

    // Milliseconds, as the SQLite journal keeps them: a report's step times are sub-second.
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        try AbandonedDeclaration.encoder.encode(value)
    }
    public static func decode<T: Decodable>(_ type: T.Type, _ item: EtcdKeyValue) throws -> T {
        do {
            return try AbandonedDeclaration.decoder.decode(type, from: item.value)
        } catch {
            throw FailoverError(.journal, "etcd: \(item.key) holds no \(type): \(error)")
        }
    }

    /// One fenced transaction of puts and deletes.
    public func write(_ what: String, _ operations: [EtcdOperation], also extra: [EtcdCompare] = []) throws {
        let compares = try fence.compares() + extra
        let result = try client.txn(compares, success: operations, what: what)
        if !result.succeeded { throw deposed(what) }
    }

    func deposed(_ what: String) -> FailoverError {
        let held = fence.holdings.map(\.what).joined(separator: " and ")
        let reason = "no longer holds \(held.isEmpty ? "its keys" : held) in etcd"
        fence.depose(reason)
        return FailoverError(
            .deposed, "deposed: node \(fence.node) \(reason); refused to \(what), and does nothing more")
    }

    // MARK: Lease

    public func lease() throws -> (lease: FailoverLease, run: FailoverRun?)? {
        guard let item = try client.get(keys.runLease) else { return nil }
        let lease = try Self.decode(FailoverLease.self, item)
        return (lease, try run(id: lease.runId))
    }

    /// Takes the lease, or returns what blocks it: an active run's lease, or an active run.
    public func takeLease(_ lease: FailoverLease) throws -> (lease: FailoverLease, run: FailoverRun?)? {
        let held = try client.get(keys.runLease)
        if let held {
            let current = try Self.decode(FailoverLease.self, held)
            if let run = try run(id: current.runId), run.state.isActive { return (current, run) }
        }
        if let active = try runs().first(where: { $0.state.isActive }) {
            let holder = FailoverLease(
                deployment: lease.deployment, runId: active.id, lead: active.lead, pid: 0, host: "?",
                since: active.declaredAt)
            return (holder, active)
        }
        // Compare-and-swap on the lease key as read: two commands declaring at once, one wins.
        try write(
            "take the lease", [.put(keys.runLease, try Self.encode(lease))],
            also: [held.map { .modRevision(keys.runLease, $0.modRevision) } ?? .createRevision(keys.runLease, 0)])
        return nil
    }

    public func releaseLease(runId: String) throws {
        guard let item = try client.get(keys.runLease),
            try Self.decode(FailoverLease.self, item).runId == runId
        else { return }
        try write("release the lease", [.delete(keys.runLease)], also: [.modRevision(keys.runLease, item.modRevision)])
    }

    public func touchLease(runId: String, pid: Int, host: String) throws {
        guard let item = try client.get(keys.runLease) else { return }
        var lease = try Self.decode(FailoverLease.self, item)
        guard lease.runId == runId else { return }
        lease.pid = pid
        lease.host = host
        try write("update the lease", [.put(keys.runLease, try Self.encode(lease))])
    }

    public func abandonDeclaration(_ attempt: AbandonedDeclaration) throws {
        var operations: [EtcdOperation] = [.put(keys.abandoned, try Self.encode(attempt))]
        if let item = try client.get(keys.runLease), try Self.decode(FailoverLease.self, item).runId == attempt.runId {
            operations.append(.delete(keys.runLease))
        }
        try write("record the declaration of \(attempt.runId) as not completed", operations)
    }

    public func abandonedDeclaration() throws -> AbandonedDeclaration? {
        guard let item = try client.get(keys.abandoned) else { return nil }
        return try? Self.decode(AbandonedDeclaration.self, item)
    }

    // MARK: Runs

    /// The steps go in batches first (etcd takes at most 128 operations per transaction by
    /// default), the run key last: a run is visible once its key exists, with every step.
    public func declare(run: FailoverRun, steps: [RunStep], sets: [RunSet], decisions: [RunDecision]) throws {
        var operations: [EtcdOperation] = []
        for step in steps {
            operations.append(.put(keys.step(run.id, step.seq), try Self.encode(StepRecord(step: step, node: nil))))
        }
        for set in sets { operations.append(.put(keys.set(run.id, set.name), try Self.encode(set))) }
        var stamp = Self.stamp(run.declaredAt)
        for decision in decisions {
            operations.append(.put(keys.decisions(run.id) + stamp, try Self.encode(decision)))
            stamp = Self.next(stamp)
        }
        while operations.count > 100 {
            try write("record the steps of run \(run.id)", Array(operations.prefix(100)))
            operations.removeFirst(100)
        }
        operations.append(.put(keys.run(run.id), try Self.encode(run)))
        try write("record the declaration of run \(run.id)", operations)
    }

    public func run(id: String) throws -> FailoverRun? {
        try client.get(keys.run(id)).map { try Self.decode(FailoverRun.self, $0) }
    }

    /// Newest first, as the SQLite journal orders them.
    public func runs() throws -> [FailoverRun] {
        try client.list(prefix: keys.runs).map { try Self.decode(FailoverRun.self, $0) }
            .sorted { $0.declaredAt > $1.declaredAt }
    }

    public func steps(runId: String) throws -> [RunStep] {
        try client.list(prefix: keys.steps(runId)).map { try Self.decode(RunStep.self, $0) }.sorted { $0.seq < $1.seq }
    }

    /// Which node executed each step (its latest state change while running it), by step id.
    public func stepNodes(runId: String) throws -> [String: String] {
        var nodes: [String: String] = [:]
        for item in try client.list(prefix: keys.steps(runId)) {
            let record = try Self.decode(StepRecord.self, item)
            if let node = record.node { nodes[record.step.stepId] = node }
        }
        return nodes
    }

    public func decisions(runId: String) throws -> [RunDecision] {
        var decisions = try client.list(prefix: keys.decisions(runId)).map { try Self.decode(RunDecision.self, $0) }
        for index in decisions.indices { decisions[index].id = Int64(index + 1) }
        return decisions
    }

    public func sets(runId: String) throws -> [RunSet] {
        try client.list(prefix: keys.sets(runId)).map { try Self.decode(RunSet.self, $0) }.sorted { $0.name < $1.name }
    }

    /// The engine's write while it executes the step: the writer's node goes with it, except when
    /// a new leader finds the step cut short (`interrupted`): it did not run it, its predecessor did.
    public func update(_ step: RunStep) throws {
        let key = keys.step(step.runId, step.seq)
        var node = fence.node
        if step.state == .interrupted, let item = try client.get(key),
            let ran = (try? Self.decode(StepRecord.self, item))?.node
        {
            node = ran
        }
        try write(
            "record step \(step.stepId) as \(step.state.rawValue)",
            [.put(key, try Self.encode(StepRecord(step: step, node: node)))])
    }

    public func update(_ run: FailoverRun) throws {
        try write("record run \(run.id) as \(run.state.rawValue)", [.put(keys.run(run.id), try Self.encode(run))])
    }

    public func record(_ decision: RunDecision) throws {
        try decide(decision, steps: [], run: nil)
    }

    /// A command's decision: the steps it changes keep the node that executed them.
    public func decide(_ decision: RunDecision, steps: [RunStep], run: FailoverRun?) throws {
        var operations: [EtcdOperation] = []
        for step in steps {
            let key = keys.step(step.runId, step.seq)
            let node = try client.get(key).flatMap { try? Self.decode(StepRecord.self, $0).node }
            operations.append(.put(key, try Self.encode(StepRecord(step: step, node: node))))
        }
        if let run { operations.append(.put(keys.run(run.id), try Self.encode(run))) }
        let existing = try client.list(prefix: keys.decisions(decision.runId)).last.map {
            String($0.key.dropFirst(keys.decisions(decision.runId).count))
        }
        var stamp = Self.stamp(decision.at)
        if let existing, existing >= stamp { stamp = Self.next(existing) }
        operations.append(.put(keys.decisions(decision.runId) + stamp, try Self.encode(decision)))
        try write("record the \(decision.kind) decision", operations)
    }

    /// A decision's key: its time in microseconds, zero-padded, so keys sort as decisions were made.
    static func stamp(_ date: Date) -> String {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        let text = String(micros)
        return String(repeating: "0", count: max(0, 20 - text.count)) + text
    }

    static func next(_ stamp: String) -> String {
        let value = (Int64(stamp) ?? 0) + 1
        let text = String(value)
        return String(repeating: "0", count: max(0, 20 - text.count)) + text
    }
}

/// A step as etcd keeps it: the journal's record, with the node that executed it beside its fields
/// (`"node": "b"`), so that `RunStep` itself, and the SQLite journal, stay as they are.
struct StepRecord: Codable {
    var step: RunStep
    var node: String?

    enum Keys: String, CodingKey { case node }

    init(step: RunStep, node: String?) {
        self.step = step
        self.node = node
    }

    init(from decoder: any Decoder) throws {
        step = try RunStep(from: decoder)
        node = try decoder.container(keyedBy: Keys.self).decodeIfPresent(String.self, forKey: .node)
    }

    func encode(to encoder: any Encoder) throws {
        try step.encode(to: encoder)
        var container = encoder.container(keyedBy: Keys.self)
        try container.encodeIfPresent(node, forKey: .node)
    }
}
