import Foundation
import Logging
import StandbyLab
import Synchronization
import Testing

@testable import StandbyProbes

extension JSONDecoder {
    static var iso8601: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

/// Counts alerts in memory (the webhook tests post through StandbyTransport to a listener).
final class CountingSender: AlertSender {
    let bodies = Mutex<[String]>([])
    func post(_ body: [UInt8], to url: String) async throws {
        bodies.withLock { $0.append(String(decoding: body, as: UTF8.self)) }
    }
    var count: Int { bodies.withLock { $0.count } }
}

/// Rounds seen by the watcher's observer.
final class RoundLog: Sendable {
    struct Entry {
        var number: Int
        var verdict: SiteVerdict
        /// Whether every primary probe succeeded, or failed, in this round.
        var allPassed: Bool
        var allFailed: Bool
    }

    let rounds = Mutex<[Entry]>([])

    func append(_ round: WatchRound) {
        let primary = round.results.filter { $0.site == .primary }
        rounds.withLock {
            $0.append(
                Entry(
                    number: round.number, verdict: round.verdicts[.primary] ?? .unknown,
                    allPassed: primary.allSatisfy { $0.outcome.isSuccess },
                    allFailed: primary.allSatisfy { !$0.outcome.isSuccess }))
        }
    }

    var last: Int { rounds.withLock { $0.last?.number ?? 0 } }

    func firstRound(after number: Int, with verdict: SiteVerdict) -> Int? {
        rounds.withLock { $0.first { $0.number > number && $0.verdict == verdict }?.number }
    }

    func firstRound(after number: Int, where condition: (Entry) -> Bool) -> Int? {
        rounds.withLock { $0.first { $0.number > number && condition($0) }?.number }
    }
}

@Suite(.tags(.server), .serialized) struct WatcherTests {
    let logger = Logger(label: "test.watcher")

    @Test func verdictGoesDownAfterFallRoundsAndComesBackAfterRise() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        var server = try SIPServer.start(in: lab)
        let ports = (server.port, server.tlsPort)
        let probes = [
            Probe(
                name: "fe-sip-udp", site: .primary, target: .sipOptions(try SIPTarget(parsing: server.uri("udp"))),
                timeout: .milliseconds(800)),
            Probe(
                name: "fe-sip-tcp", site: .primary, target: .sipOptions(try SIPTarget(parsing: server.uri("tcp"))),
                timeout: .milliseconds(800)),
            Probe(
                name: "dr", site: .secondary, target: .tcp(HostPort(host: "127.0.0.1", port: 9)),
                timeout: .milliseconds(800)),
        ]
        // kamailio's workers may answer a moment after its ports accept: wait until both SIP
        // probes pass once, so that round 1 of the watcher is a success and rise = 2 means round 2.
        let runner = ProbeRunner(logger: logger)
        #expect(
            await eventually {
                var passing = true
                for probe in probes.prefix(2) where await !runner.run(probe).outcome.isSuccess { passing = false }
                return passing
            })
        let history = try HealthHistory(directory: try lab.directory("state"))
        let sender = CountingSender()
        let watcher = try HealthWatcher(
            probes: probes,
            configuration: try WatchConfiguration(
                interval: .milliseconds(1200), hysteresis: try Hysteresis(fall: 3, rise: 2), webhooks: ["http://hook"]),
            history: history, check: HealthCheck(logger: logger), sender: sender, logger: logger)
        let log = RoundLog()
        let task = Task { try await watcher.run { log.append($0) } }
        defer { task.cancel() }

        // Wait on the observer, which is called after the round's history is committed.
        #expect(await eventually { log.firstRound(after: 0, with: .up) != nil })
        #expect(try history.currentVerdict(for: .primary)?.verdict == .up)
        let firstUp = try #require(log.firstRound(after: 0, with: .up))
        let firstAllPassed = try #require(log.firstRound(after: 0) { $0.allPassed })
        #expect(firstUp - firstAllPassed == 1, "rise = 2: first passing round \(firstAllPassed), up at \(firstUp)")
        let upSince = try #require(try history.currentVerdict(for: .primary)).since

        // Marks are taken before the server stops or starts: rounds run while it does.
        let stoppedAfter = log.last
        server.stop()
        #expect(await eventually { log.firstRound(after: stoppedAfter, with: .unreachable) != nil })
        #expect(try history.currentVerdict(for: .primary)?.verdict == .unreachable)
        let downRound = try #require(log.firstRound(after: stoppedAfter, with: .unreachable))
        // The round under way when the server stopped may still have passed; count from the first that failed.
        let firstFailed = try #require(log.firstRound(after: stoppedAfter) { $0.allFailed })
        #expect(
            downRound - firstFailed == 2, "fall = 3: first failed round \(firstFailed), unreachable at \(downRound)")

        let restartedAfter = log.last
        server = try SIPServer.start(in: lab, ports: ports)
        #expect(await eventually { log.firstRound(after: restartedAfter, with: .up) != nil })
        #expect(try history.currentVerdict(for: .primary)?.verdict == .up)
        let upRound = try #require(log.firstRound(after: restartedAfter, with: .up))
        // kamailio's workers may answer a round or two after its ports accept: count from the first success.
        let firstPassed = try #require(log.firstRound(after: restartedAfter) { $0.allPassed })
        #expect(upRound - firstPassed == 1, "rise = 2: first passing round \(firstPassed), up at \(upRound)")
        task.cancel()
        _ = try? await task.value
        server.stop()

        let transitions = try history.transitions(limit: 10, site: .primary)
        // After the restart one transport may answer a round before the other (seen under load):
        // then that probe rises first and the primary is degraded on its way up, and only then.
        let partlyPassed = log.firstRound(after: restartedAfter) { !$0.allPassed && !$0.allFailed } != nil
        let verdicts = transitions.map(\.to)
        #expect(
            verdicts == ["up", "unreachable", "up"]
                || (partlyPassed && verdicts == ["up", "unreachable", "degraded", "up"]),
            "\(verdicts), a round with only some probes passing after the restart: \(partlyPassed)")
        #expect(transitions[1].from == "up" && transitions[1].detail == "down: fe-sip-udp, fe-sip-tcp")
        #expect(try history.currentVerdict(for: .primary)!.since > upSince)
        // The secondary's only probe never answered: unreachable from the first settled round.
        #expect(try history.currentVerdict(for: .secondary)?.verdict == .unreachable)
        // Alerts: secondary unreachable, then each change of the primary after its first "up"
        // (which is no news): unreachable, [degraded,] up.
        #expect(await eventually { sender.count == transitions.count })
        let probeTransitions = try history.transitions(limit: 50, site: .primary, includeProbes: true).filter {
            !$0.isSiteVerdict
        }
        #expect(probeTransitions.count == 6)
        let results = try history.results(probe: "fe-sip-udp", limit: 1000)
        #expect(results.count == log.last)
        #expect(results.contains { $0.outcome == .down && $0.detail.contains("refused") })
    }

    @Test func flappingServerRaisesNoAlertStorm() async throws {
        var peer: TestPeer? = try TestPeer(.silent)
        let port = try #require(peer?.port)
        let lab = try LabDirectory()
        defer { lab.remove() }
        let history = try HealthHistory(directory: lab.path)
        // Alerts go through StandbyTransport (libcurl) to a small HTTP listener that counts them.
        let hook = try TestPeer(.webhook)
        defer { hook.stop() }
        let sender = WebhookAlertSender(logger: logger)
        let probe = Probe(
            name: "sql", site: .primary, target: .tcp(HostPort(host: "127.0.0.1", port: port)),
            timeout: .milliseconds(200))
        let watcher = try HealthWatcher(
            probes: [probe],
            configuration: try WatchConfiguration(
                interval: .milliseconds(50), hysteresis: try Hysteresis(fall: 3, rise: 2),
                webhooks: ["http://\(hook.address)/alerts"]),
            history: history, check: HealthCheck(logger: logger), sender: sender, logger: logger)
        // Rounds 1-3 up; 4-23 flapping (down, down, up, ...); 24-28 down; 29-31 up.
        let plan: [Bool] =
            [true, true, true] + (0..<20).map { $0 % 3 == 2 } + Array(repeating: false, count: 5) + [true, true, true]
        let holder = Mutex<TestPeer?>(nil)
        holder.withLock { $0 = peer }
        peer = nil
        // The observer runs between rounds, so the server is in the planned state for the next one.
        try await watcher.run(rounds: plan.count) { round in
            guard round.number < plan.count else { return }
            let wantUp = plan[round.number]
            holder.withLock { current in
                if wantUp, current == nil {
                    current = try? TestPeer(.silent, port: port)
                } else if !wantUp, let running = current {
                    running.stop()
                    current = nil
                }
            }
        }
        holder.withLock { $0?.stop() }
        let verdicts = try history.transitions(limit: 20, site: .primary).reversed().map(\.to)
        #expect(Array(verdicts) == ["up", "unreachable", "up"])
        #expect(await eventually { hook.postCount == 2 })
        try await Task.sleep(for: .milliseconds(200))
        #expect(hook.postCount == 2, "one alert per verdict transition, none for the flapping")
        let bodies = hook.posts.withLock { $0 }
        let alerts = try bodies.map { try JSONDecoder.iso8601.decode(HealthAlert.self, from: Data($0.utf8)) }
        #expect(alerts.map(\.to) == ["unreachable", "up"])
        #expect(alerts.first?.probes.first?.name == "sql" && alerts.first?.probes.first?.state == "down")
        let downs = try history.results(probe: "sql", limit: 100).filter { $0.outcome == .down }.count
        #expect(downs == plan.filter { !$0 }.count)
    }

    @Test func restartingTheWatcherKeepsTheVerdictAndItsStart() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let history = try HealthHistory(directory: lab.path)
        let sender = CountingSender()
        let probe = Probe(
            name: "gone", site: .primary, target: .tcp(HostPort(host: "127.0.0.1", port: 9)),
            timeout: .milliseconds(200))
        let configuration = try WatchConfiguration(
            interval: .milliseconds(20), hysteresis: try Hysteresis(fall: 2, rise: 2), webhooks: ["http://hook"])
        for _ in 0..<2 {
            let watcher = try HealthWatcher(
                probes: [probe], configuration: configuration, history: history, check: HealthCheck(logger: logger),
                sender: sender,
                logger: logger)
            try await watcher.run(rounds: 3)
        }
        #expect(try history.transitions(limit: 10, site: .primary).map(\.to) == ["unreachable"])
        #expect(sender.count == 1)
        let alert = try #require(sender.bodies.withLock { $0.first })
        #expect(alert.contains("\"to\":\"unreachable\"") && alert.contains("\"site\":\"primary\""), "\(alert)")
        #expect(try history.resultCount() == 6)
    }

    @Test func historyIsPrunedByAge() async throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let history = try HealthHistory(directory: lab.path)
        let old = Date() - 10 * 86_400
        func result(_ at: Date) -> ProbeResult {
            ProbeResult(
                probe: "p", site: .primary, kind: "tcp", target: "x:1", outcome: .up, latency: .milliseconds(3),
                detail: "ok", at: at)
        }
        let transitions = [
            HealthTransition(subject: .site(.primary), site: .primary, from: "unknown", to: "up", at: old, detail: ""),
            HealthTransition(subject: .probe("p"), site: .primary, from: "unknown", to: "up", at: old, detail: ""),
        ]
        try await history.record(results: [result(old), result(old), result(Date())], transitions: transitions)
        let removed = try await history.prune(resultsBefore: Date() - 86_400, transitionsBefore: Date() - 86_400)
        #expect(removed == 3)
        #expect(try history.resultCount() == 1)
        // The newest verdict of a site stays, however old: "up since ten days ago" is still true.
        #expect(
            try history.currentVerdict(for: .primary)?.since == Date(timeIntervalSince1970: old.timeIntervalSince1970))
        #expect(try history.results(limit: 5).first?.latency == .milliseconds(3))
    }

    @Test func undeliveredAlertsAreRetried() async throws {
        final class FlakySender: AlertSender {
            let attempts = Mutex(0)
            func post(_ body: [UInt8], to url: String) async throws {
                let attempt = attempts.withLock { value in
                    value += 1
                    return value
                }
                if attempt < 3 { throw ProbeError(.alert, "webhook \(url) answered HTTP 503") }
            }
        }
        let lab = try LabDirectory()
        defer { lab.remove() }
        let sender = FlakySender()
        let probe = Probe(
            name: "gone", site: .primary, target: .tcp(HostPort(host: "127.0.0.1", port: 9)),
            timeout: .milliseconds(200))
        let watcher = try HealthWatcher(
            probes: [probe],
            configuration: try WatchConfiguration(
                interval: .milliseconds(20), hysteresis: try Hysteresis(fall: 1, rise: 1), webhooks: ["http://hook"],
                alertRetries: 3, alertRetryDelay: .milliseconds(10)),
            history: try HealthHistory(directory: lab.path), check: HealthCheck(logger: logger), sender: sender,
            logger: logger)
        try await watcher.run(rounds: 1)
        #expect(sender.attempts.withLock { $0 } == 3)
    }
}
