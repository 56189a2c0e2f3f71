import Logging

/// Moves the record sets of one zone from their expected values to their targets with a single
/// TSIG-signed RFC 2136 update to the primary master (the first server), guarded by prerequisites
/// that each record set still holds exactly the expected value, then queries every authoritative
/// server until each serves the targets with the AA bit.
///
/// It is a compare-and-swap: a stale or concurrent controller gets a failed prerequisite and
/// changes nothing; records already at their targets make it a no-op that says so, so a resumed
/// failover can run it again safely.
public struct DNSCutover: Sendable {
    public let zone: String
    /// Every authoritative server; the first is the primary master that takes the update.
    public let servers: [DNSServer]
    /// How the update is signed: a TSIG key, or GSS-TSIG with a Kerberos account.
    public let auth: DNSAuthentication
    /// The changes, with values in canonical presentation form.
    public let changes: [RecordChange]
    public var client: DNSClient
    /// How long verification waits for every server to serve the targets.
    public var verifyTimeout: Duration

    public init(
        zone: String, servers: [DNSServer], key: TSIGKey, changes: [RecordChange], timeout: Duration = .seconds(3),
        verifyTimeout: Duration = .seconds(60), logger: Logger
    ) throws(DNSError) {
        try self.init(
            zone: zone, servers: servers, auth: .tsig(key), changes: changes, timeout: timeout,
            verifyTimeout: verifyTimeout, logger: logger)
    }

    public init(
        zone: String, servers: [DNSServer], auth: DNSAuthentication, changes: [RecordChange],
        timeout: Duration = .seconds(3), verifyTimeout: Duration = .seconds(60), logger: Logger
    ) throws(DNSError) {
        guard !servers.isEmpty else { throw DNSError(.invalidInput, "zone \(zone) has no DNS servers to update") }
        guard !changes.isEmpty else { throw DNSError(.invalidInput, "zone \(zone): no records to change") }
        let zoneName = DNSName.absoluteZone(zone)
        var normalized: [RecordChange] = []
        var seen: Set<String> = []
        for change in changes {
            let owner = DNSName.absolute(change.name, in: zoneName)
            guard owner == zoneName || owner.hasSuffix("." + zoneName) || zoneName == "." else {
                throw DNSError(.invalidInput, "\(owner) is not inside the zone \(zoneName)")
            }
            _ = try LDNS.type(named: change.type)
            guard seen.insert("\(owner) \(change.type)").inserted else {
                throw DNSError(.invalidInput, "\(owner) \(change.type) is listed twice")
            }
            var copy = change
            copy.from = try change.from.map { value throws(DNSError) in
                try LDNS.normalize(rdata: value, type: change.type, owner: owner)
            }
            copy.to = try change.to.map { value throws(DNSError) in
                try LDNS.normalize(rdata: value, type: change.type, owner: owner)
            }
            normalized.append(copy)
        }
        self.zone = zoneName
        self.servers = servers
        self.auth = auth
        self.changes = normalized
        self.client = DNSClient(timeout: timeout, logger: logger)
        self.verifyTimeout = verifyTimeout
    }

    /// A cutover that re-times record sets and keeps their values (`prepare --ttl 60` ahead of a
    /// planned switch; `prepare --restore` with the configured TTLs). The values are read from
    /// the primary now and become the prerequisite, so a concurrent change still wins.
    public static func retime(
        zone: String, servers: [DNSServer], key: TSIGKey, records: [RecordTTL], timeout: Duration = .seconds(3),
        verifyTimeout: Duration = .seconds(60), logger: Logger
    ) async throws(DNSError) -> DNSCutover {
        try await retime(
            zone: zone, servers: servers, auth: .tsig(key), records: records, timeout: timeout,
            verifyTimeout: verifyTimeout, logger: logger)
    }

    public static func retime(
        zone: String, servers: [DNSServer], auth: DNSAuthentication, records: [RecordTTL],
        timeout: Duration = .seconds(3), verifyTimeout: Duration = .seconds(60), logger: Logger
    ) async throws(DNSError) -> DNSCutover {
        guard let primary = servers.first else {
            throw DNSError(.invalidInput, "zone \(zone) has no DNS servers to update")
        }
        let client = DNSClient(timeout: timeout, logger: logger)
        var changes: [RecordChange] = []
        for record in records {
            let answer = try await client.query(primary, name: record.name, type: record.type, zone: zone)
            guard answer.authoritative, !answer.rdata.isEmpty else {
                throw DNSError(
                    .invalidInput, server: primary,
                    "\(primary) does not serve \(answer.name) \(record.type) authoritatively; nothing to re-time")
            }
            changes.append(
                RecordChange(
                    name: record.name, type: record.type, ttl: record.ttl, from: answer.rdata, to: answer.rdata))
        }
        return try DNSCutover(
            zone: zone, servers: servers, auth: auth, changes: changes, timeout: timeout, verifyTimeout: verifyTimeout,
            logger: logger)
    }

    public var primary: DNSServer { servers[0] }

    /// Runs the compare-and-swap and, unless `dryRun`, the verification on every server.
    ///
    /// - A dry run sends a no-op update: each record set rewritten with the values and TTL it
    ///   holds, under the prerequisites. The server checks the key, the values and the right to
    ///   change the records, and serves what it served.
    /// - A run that finds every record set at its target sends the signed prerequisites alone: a
    ///   wrong key fails there too, rather than passing for "nothing to do".
    /// - Throws `prerequisiteFailed` (with what every server serves now) when a record set no
    ///   longer holds its expected value, and `verificationTimedOut` (with a per-server report)
    ///   when a server does not serve the targets within `verifyTimeout`.
    public func run(dryRun: Bool = false) async throws(DNSError) -> CutoverResult {
        let started = ContinuousClock.now
        let logger = client.logger
        let before = try await readPrimary()

        var prerequisites: [Prerequisite] = []
        var updates: [UpdateOperation] = []
        for (change, answer) in zip(changes, before) {
            let valuesAtTarget = answer.holds(change.to)
            let atTarget = valuesAtTarget && (change.to.isEmpty || answer.ttl == change.ttl)
            // Records already holding their target values are pinned to those; only the TTL may
            // still need rewriting. All others must hold exactly the expected value.
            prerequisites.append(
                .holds(name: change.name, type: change.type, rdata: valuesAtTarget ? change.to : change.from))
            if atTarget { continue }
            updates.append(.deleteRecordSet(name: change.name, type: change.type))
            updates += change.to.map { .add(name: change.name, type: change.type, ttl: change.ttl, rdata: $0) }
        }
        let noop = updates.isEmpty
        let metadata: Logger.Metadata = [
            "zone": "\(zone)", "server": "\(primary)", "records": "\(changes.count)", "auth": "\(auth)",
        ]

        // A reply whose signature does not verify (Samba's GSS-TSIG) proves nothing by itself: the
        // queries on every server that follow are the proof, and the result says so.
        var notes: [String] = []
        if dryRun {
            // Prerequisites alone prove the key and the values, not the right to change the
            // records: servers check that only for what an update touches (an account without
            // rights passed a prerequisite-only check on Samba). So each record set is rewritten
            // with the values and TTL it holds, guarded by the prerequisite that it holds them:
            // the server checks the right to change it, and what it serves stays the same.
            var probes: [UpdateOperation] = []
            for (change, answer) in zip(changes, before) where !answer.rdata.isEmpty {
                let ttl = answer.ttl ?? change.ttl
                probes.append(.deleteRecordSet(name: change.name, type: change.type))
                probes += answer.rdata.map { .add(name: change.name, type: change.type, ttl: ttl, rdata: $0) }
            }
            if let note = try await send(prerequisites: prerequisites, updates: probes) { notes.append(note) }
            logger.info("DNS dry run: prerequisites hold", metadata: metadata)
            return CutoverResult(
                outcome: noop ? .alreadyAtTarget : .wouldApply, dryRun: true, primary: primary, before: before,
                servers: [], elapsed: ContinuousClock.now - started, notes: notes)
        }

        if noop {
            // Nothing to change, but a wrong secret must never pass for success: the
            // prerequisites go out alone, signed, and only the server's acceptance proves the key.
            if let note = try await send(prerequisites: prerequisites, updates: []) { notes.append(note) }
            logger.info("DNS records already at target", metadata: metadata)
        } else {
            if let note = try await send(prerequisites: prerequisites, updates: updates) { notes.append(note) }
            logger.info("DNS update applied", metadata: metadata)
        }

        let states = await verify(since: ContinuousClock.now)
        let late = states.filter { !$0.verified }
        if !late.isEmpty {
            let what =
                noop
                ? "the records were already at their targets on \(primary)" : "the update was applied on \(primary)"
            throw DNSError(
                .verificationTimedOut,
                "\(what), but after \(verifyTimeout.secondsText) \(late.map(\.server.description).joined(separator: ", ")) "
                    + "\(late.count == 1 ? "does" : "do") not serve the new records",
                reports: states)
        }
        logger.info("DNS cutover verified on every server", metadata: metadata)
        return CutoverResult(
            outcome: noop ? .alreadyAtTarget : .applied, dryRun: false, primary: primary, before: before,
            servers: states, elapsed: ContinuousClock.now - started, notes: notes)
    }

    /// What every server serves now for every record set (for `standby dns show`, and the report
    /// of a failed prerequisite). Never throws: a server that cannot be asked says why.
    public func inspect() async -> [ServerState] {
        await withTaskGroup(of: (Int, ServerState).self) { group in
            for (index, server) in servers.enumerated() {
                group.addTask { (index, await state(of: server)) }
            }
            var states: [(Int, ServerState)] = []
            for await state in group { states.append(state) }
            return states.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    /// Queries every server until each serves every target with the AA bit, or `verifyTimeout`
    /// passes. Returns one state per server, in the order of `servers`.
    public func verify(since start: ContinuousClock.Instant = .now) async -> [ServerState] {
        let deadline = start + verifyTimeout
        return await withTaskGroup(of: (Int, ServerState).self) { group in
            for (index, server) in servers.enumerated() {
                group.addTask { (index, await poll(server, start: start, deadline: deadline)) }
            }
            var states: [(Int, ServerState)] = []
            for await state in group { states.append(state) }
            return states.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    // MARK: - Steps

    private func readPrimary() async throws(DNSError) -> [RecordSetAnswer] {
        let results = await ask(primary, client: client)
        var answers: [RecordSetAnswer] = []
        for result in results { answers.append(try result.get()) }
        return answers
    }

    /// Returns why the reply's signature could not be verified, when it could not.
    @discardableResult
    private func send(prerequisites: [Prerequisite], updates: [UpdateOperation]) async throws(DNSError) -> String? {
        do {
            return try await client.update(
                primary, zone: zone, auth: auth, prerequisites: prerequisites, updates: updates)
        } catch  where error.isPrerequisiteFailure {
            var detailed = error
            detailed.servedNow = await inspect()
            detailed.message +=
                ". Expected: "
                + changes.map {
                    "\(DNSName.absolute($0.name, in: zone)) \($0.type) [\($0.from.joined(separator: ", "))]"
                }
                .joined(separator: "; ")
            throw detailed
        }
    }

    private func poll(_ server: DNSServer, start: ContinuousClock.Instant, deadline: ContinuousClock.Instant) async
        -> ServerState
    {
        var interval = Duration.milliseconds(10)
        var answers: [RecordSetAnswer] = []
        var problem: String?
        while true {
            var perQuery = client
            perQuery.timeout = max(.milliseconds(50), min(client.timeout, deadline - .now))
            let results = await ask(server, client: perQuery)
            problem = nil
            answers = []
            for result in results {
                switch result {
                case .success(let answer): answers.append(answer)
                case .failure(let error): problem = error.message
                }
            }
            if problem == nil && zip(changes, answers).allSatisfy({ atTarget($1, $0) }) {
                let elapsed = ContinuousClock.now - start
                let serial = try? await perQuery.soaSerial(server, zone: zone)
                client.logger.debug(
                    "DNS server serves the targets",
                    metadata: ["server": "\(server)", "elapsed": "\(elapsed.secondsText)"])
                return ServerState(
                    server: server, records: answers, soaSerial: serial, problem: nil, verified: true, elapsed: elapsed)
            }
            let remaining = deadline - .now
            if remaining <= .zero || Task.isCancelled { break }
            try? await Task.sleep(for: min(interval, remaining))
            interval = min(interval * 2, .milliseconds(250))
        }
        var last = client
        last.timeout = min(client.timeout, .seconds(1))
        let serial = try? await last.soaSerial(server, zone: zone)
        if problem == nil {
            let wrong = zip(changes, answers).filter { !atTarget($1, $0) }.map { "\($1.name) \($1.type)" }
            problem = "does not serve the target of \(wrong.joined(separator: ", "))"
        }
        return ServerState(
            server: server, records: answers, soaSerial: serial, problem: problem, verified: false, elapsed: nil)
    }

    private func state(of server: DNSServer) async -> ServerState {
        let results = await ask(server, client: client)
        var answers: [RecordSetAnswer] = []
        var problem: String?
        for result in results {
            switch result {
            case .success(let answer): answers.append(answer)
            case .failure(let error): problem = error.message
            }
        }
        let serial = problem == nil ? try? await client.soaSerial(server, zone: zone) : nil
        let verified = problem == nil && zip(changes, answers).allSatisfy { atTarget($1, $0) }
        return ServerState(
            server: server, records: answers, soaSerial: serial, problem: problem, verified: verified, elapsed: nil)
    }

    private func atTarget(_ answer: RecordSetAnswer, _ change: RecordChange) -> Bool {
        answer.holds(change.to) && (change.to.isEmpty || answer.ttl == change.ttl)
    }

    /// Every change's record set on `server`, asked concurrently, in the order of `changes`.
    private func ask(_ server: DNSServer, client: DNSClient) async -> [Result<RecordSetAnswer, DNSError>] {
        let zone = self.zone
        return await withTaskGroup(of: (Int, Result<RecordSetAnswer, DNSError>).self) { group in
            for (index, change) in changes.enumerated() {
                group.addTask {
                    do throws(DNSError) {
                        return (
                            index,
                            .success(try await client.query(server, name: change.name, type: change.type, zone: zone))
                        )
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            var results: [(Int, Result<RecordSetAnswer, DNSError>)] = []
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }
}

/// What a cutover did.
public struct CutoverResult: Sendable, CustomStringConvertible, Encodable {
    public enum Outcome: String, Sendable, Encodable {
        /// The update was applied and every server serves the targets.
        case applied
        /// Every record set already held its target: only the signed prerequisites were sent, which
        /// proved the key.
        case alreadyAtTarget
        /// Dry run: the key was accepted and every prerequisite holds; nothing was changed.
        case wouldApply
    }

    public let outcome: Outcome
    public let dryRun: Bool
    public let primary: DNSServer
    /// What the primary served before the update: the values to go back to on failback.
    public let before: [RecordSetAnswer]
    /// Per-server verification (empty for a dry run).
    public let servers: [ServerState]
    public let elapsed: Duration
    /// What the result rests on beyond the signed reply (a reply signature that did not verify).
    public var notes: [String] = []

    enum CodingKeys: String, CodingKey {
        case outcome, dryRun, primary, before, servers, elapsedSeconds, summary, notes
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(outcome, forKey: .outcome)
        try container.encode(dryRun, forKey: .dryRun)
        try container.encode(primary, forKey: .primary)
        try container.encode(before, forKey: .before)
        try container.encode(servers, forKey: .servers)
        try container.encode(elapsed.seconds, forKey: .elapsedSeconds)
        try container.encode(notes, forKey: .notes)
        try container.encode(description.split(separator: "\n").first.map(String.init) ?? "", forKey: .summary)
    }

    public var description: String {
        var lines: [String]
        switch outcome {
        case .applied:
            lines = ["DNS updated on \(primary) and verified on \(servers.count) server(s) in \(elapsed.secondsText)"]
        case .alreadyAtTarget:
            lines = [
                dryRun
                    ? "dry run: the records are already at their targets on \(primary); the key is accepted"
                    : "nothing to do: the records were already at their targets and \(primary) accepts the key; verified on \(servers.count) server(s)"
            ]
        case .wouldApply:
            lines = ["dry run: \(primary) accepts the key and every record holds its expected value; nothing changed"]
        }
        lines += servers.map { "  " + $0.description }
        lines += notes.map {
            "  note: \($0)" + (dryRun ? "" : "; the records served by every server above are the proof")
        }
        return lines.joined(separator: "\n")
    }
}
