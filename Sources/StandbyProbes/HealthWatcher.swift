import Foundation
import Logging
import StandbyTransport

/// How the watcher probes, remembers and alerts.
public struct WatchConfiguration: Sendable {
    public var interval: Duration
    public var hysteresis: Hysteresis
    /// Webhook URLs that receive a JSON `HealthAlert` once per verdict transition.
    public var webhooks: [String]
    /// Named in every alert (the deployment).
    public var source: String
    /// Attempts per webhook and alert beyond the first, `alertRetryDelay` apart and doubling.
    public var alertRetries: Int
    public var alertRetryDelay: Duration
    /// Results older than this are pruned.
    public var keepResults: Duration
    /// Probe transitions older than this are pruned (the newest verdict of each site always stays).
    public var keepTransitions: Duration

    public init(
        interval: Duration = .seconds(10), hysteresis: Hysteresis, webhooks: [String] = [], source: String = "standby",
        alertRetries: Int = 3, alertRetryDelay: Duration = .seconds(1), keepResults: Duration = .seconds(7 * 86_400),
        keepTransitions: Duration = .seconds(90 * 86_400)
    ) throws {
        guard interval >= .milliseconds(10) else {
            throw ProbeError(.badConfiguration, "health interval \(interval) is too short (10ms at least)")
        }
        self.interval = interval
        self.hysteresis = hysteresis
        self.webhooks = webhooks
        self.source = source
        self.alertRetries = max(0, alertRetries)
        self.alertRetryDelay = alertRetryDelay
        self.keepResults = keepResults
        self.keepTransitions = keepTransitions
    }
}

/// One round of the watcher, as handed to an observer (the CLI's `--watch` prints it).
public struct WatchRound: Sendable {
    public var number: Int
    public var results: [ProbeResult]
    /// Probe transitions and the site transitions that were recorded (new verdicts).
    public var transitions: [HealthTransition]
    public var verdicts: [ProbeSite: SiteVerdict]
}

/// Probes at `interval` until cancelled: records every result and transition in the history and
/// posts an alert once per site verdict transition.
///
/// A verdict is compared with the last one *recorded* (it survives a restart of the watcher), so
/// restarting the watcher during an outage neither resets "since when" nor raises the alert again.
/// The first verdict ever recorded raises an alert unless it is `up`.
///
/// With an `announcer` (cluster mode) the alerts follow the shared record instead of this
/// watcher's history: each round, when this watcher may post, a site whose verdict differs from
/// the one last announced (by any watcher) is announced, and recorded as announced once posted.
public struct HealthWatcher: Sendable {
    public let probes: [Probe]
    public let configuration: WatchConfiguration
    public let history: HealthHistory
    public let check: HealthCheck
    public let sender: (any AlertSender)?
    public let announcer: (any AlertAnnouncer)?
    let logger: Logger

    public init(
        probes: [Probe], configuration: WatchConfiguration, history: HealthHistory, check: HealthCheck,
        sender: (any AlertSender)?, announcer: (any AlertAnnouncer)? = nil, logger: Logger
    ) throws {
        guard !probes.isEmpty else { throw ProbeError(.badConfiguration, "no health probes to watch") }
        let names = probes.map(\.name)
        guard Set(names).count == names.count else {
            throw ProbeError(.badConfiguration, "probe names must be unique: \(names.joined(separator: ", "))")
        }
        let slow = probes.filter { $0.timeout >= configuration.interval }
        if !slow.isEmpty {
            // Rounds then follow each other back to back, and detection takes fall × timeout.
            logger.warning(
                "Probe timeout is not shorter than the health interval",
                metadata: [
                    "probes": "\(slow.map(\.name).joined(separator: ","))", "interval": "\(configuration.interval)",
                ])
        }
        self.probes = probes
        self.configuration = configuration
        self.history = history
        self.check = check
        self.sender = sender
        self.announcer = announcer
        self.logger = logger
    }

    /// Runs `rounds` rounds (until cancelled when nil), calling `observe` after each.
    public func run(rounds: Int? = nil, observe: (@Sendable (WatchRound) async -> Void)? = nil) async throws {
        var monitor = HealthMonitor(probes: probes, policy: configuration.hysteresis)
        var recorded: [ProbeSite: SiteVerdict] = [:]
        for site in ProbeSite.allCases {
            recorded[site] = try history.currentVerdict(for: site)?.verdict
        }
        let (alerts, alertInput) = AsyncStream.makeStream(of: HealthAlert.self, bufferingPolicy: .bufferingNewest(64))
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Alerts go out on their own task: a slow or dead webhook must not delay probing.
            group.addTask {
                for await alert in alerts { await deliver(alert) }
            }
            defer { alertInput.finish() }
            let clock = ContinuousClock()
            var tick = clock.now
            var lastPrune: ContinuousClock.Instant?
            var number = 0
            // With an announcer: the verdict handed to the alert task per site in this stretch of
            // posting, so that a slow webhook does not get the same alert every round.
            var offered: [ProbeSite: SiteVerdict] = [:]
            while rounds.map({ number < $0 }) ?? true {
                try Task.checkCancellation()
                number += 1
                let results = await check.results(of: probes)
                var transitions = monitor.record(results)
                transitions = transitions.filter { transition in
                    guard case .site(let site) = transition.subject else { return true }
                    let verdict = SiteVerdict(rawValue: transition.to) ?? .unknown
                    guard verdict != .unknown, verdict != recorded[site] else { return false }
                    return true
                }
                for index in transitions.indices {
                    guard case .site(let site) = transitions[index].subject else { continue }
                    let previous = recorded[site]
                    transitions[index].from = previous?.rawValue ?? SiteVerdict.unknown.rawValue
                    recorded[site] = SiteVerdict(rawValue: transitions[index].to)
                    logger.notice(
                        "Site verdict changed",
                        metadata: [
                            "site": "\(site.rawValue)", "from": "\(transitions[index].from)",
                            "to": "\(transitions[index].to)", "detail": "\(transitions[index].detail)",
                        ])
                    if announcer == nil, previous != nil || transitions[index].to != SiteVerdict.up.rawValue {
                        alertInput.yield(alert(for: transitions[index], monitor: monitor))
                    }
                }
                try await history.record(results: results, transitions: transitions)
                if lastPrune.map({ $0.duration(to: clock.now) >= .seconds(300) }) ?? true {
                    lastPrune = clock.now
                    try await prune()
                }
                var verdicts: [ProbeSite: SiteVerdict] = [:]
                for site in ProbeSite.allCases { verdicts[site] = monitor.verdict(for: site) }
                if let announcer {
                    for alert in await announcements(announcer, monitor: monitor, offered: &offered) {
                        alertInput.yield(alert)
                    }
                }
                await observe?(
                    WatchRound(number: number, results: results, transitions: transitions, verdicts: verdicts))
                if let rounds, number >= rounds { break }
                // The next tick on the interval grid; a round that overran it is followed at once (not
                // at the tick after: that would double the detection time), and late rounds never bunch.
                tick += configuration.interval
                if tick < clock.now { tick = clock.now }
                try await clock.sleep(until: tick)
            }
            alertInput.finish()
            try await group.waitForAll()
        }
    }

    private func prune() async throws {
        let now = Date()
        let removed = try await history.prune(
            resultsBefore: now - configuration.keepResults.timeInterval,
            transitionsBefore: now - configuration.keepTransitions.timeInterval)
        if removed > 0 { logger.info("Health history pruned", metadata: ["rows": "\(removed)"]) }
    }

    /// The alerts due from this watcher now: none while it may not post; else one per site whose
    /// verdict is not the one last announced. A site's first verdict, when it is `up`, is only
    /// recorded, as a lone watcher records it without an alert.
    private func announcements(
        _ announcer: any AlertAnnouncer, monitor: HealthMonitor, offered: inout [ProbeSite: SiteVerdict]
    ) async -> [HealthAlert] {
        guard announcer.mayPost else {
            offered = [:]
            return []
        }
        let announced: [ProbeSite: SiteVerdict]
        do {
            announced = try await announcer.announced()
        } catch {
            logger.warning("Cannot read the announced verdicts; no alert this round", metadata: ["error": "\(error)"])
            return []
        }
        var alerts: [HealthAlert] = []
        for site in ProbeSite.allCases {
            let verdict = monitor.verdict(for: site)
            guard verdict != .unknown, verdict != announced[site], verdict != offered[site] else { continue }
            offered[site] = verdict
            if announced[site] == nil && verdict == .up {
                try? await announcer.record(verdict, site: site, at: Date())
                continue
            }
            let down = probes.filter { $0.site == site && monitor.state(of: $0.name) == .down }.map(\.name)
            let transition = HealthTransition(
                subject: .site(site), site: site, from: (announced[site] ?? .unknown).rawValue, to: verdict.rawValue,
                at: Date(), detail: down.isEmpty ? "no probe down" : "down: " + down.joined(separator: ", "))
            var alert = alert(for: transition, monitor: monitor)
            alert.node = announcer.node
            alerts.append(alert)
        }
        return alerts
    }

    private func alert(for transition: HealthTransition, monitor: HealthMonitor) -> HealthAlert {
        let lines = probes.filter { $0.site == transition.site }.map { probe in
            HealthAlert.ProbeLine(
                name: probe.name, state: monitor.state(of: probe.name).rawValue, detail: probe.target.description)
        }
        return HealthAlert(
            source: configuration.source, site: transition.site, from: transition.from, to: transition.to,
            at: transition.at, detail: transition.detail, probes: lines)
    }

    private func deliver(_ alert: HealthAlert) async {
        guard let sender, !configuration.webhooks.isEmpty else { return }
        let body: [UInt8]
        do {
            body = try alert.json()
        } catch {
            logger.error("Cannot encode a health alert", metadata: ["error": "\(error)"])
            return
        }
        for url in configuration.webhooks {
            var delay = configuration.alertRetryDelay
            for attempt in 0...configuration.alertRetries {
                do {
                    try await sender.post(body, to: url)
                    logger.info(
                        "Health alert posted",
                        metadata: ["webhook": "\(Redaction.redacted(url))", "site": "\(alert.site.rawValue)"])
                    break
                } catch {
                    logger.warning(
                        "Health alert not delivered",
                        metadata: [
                            "webhook": "\(Redaction.redacted(url))", "attempt": "\(attempt + 1)", "error": "\(error)",
                        ])
                    if attempt == configuration.alertRetries { break }
                    try? await Task.sleep(for: delay)
                    delay *= 2
                }
            }
        }
        // Recorded after the posts: a leader killed in between leaves it to the next one to post
        // again (twice rather than never).
        if let announcer, let verdict = SiteVerdict(rawValue: alert.to) {
            do {
                try await announcer.record(verdict, site: alert.site, at: alert.at)
            } catch {
                logger.warning(
                    "Cannot record the announced verdict",
                    metadata: ["site": "\(alert.site.rawValue)", "error": "\(error)"])
            }
        }
    }
}
