import ArgumentParser
import Foundation
import Logging
import StandbyLab
import StandbyProbes
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The health watcher under a realistic load: 200 probes (TCP connects and SIP OPTIONS over
/// UDP, TCP and TLS) against kamailio on loopback, every second, for minutes. Every 10 s it
/// prints the watcher's resident memory and CPU time (they should stay flat), then measures how
/// long the watcher takes to see the server hang (SIGSTOP: probes time out) and crash (killed:
/// connections refused), against the bound fall × interval + timeout.
struct ProbeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probes",
        abstract: "200 probes at 1 s for N minutes: watcher RSS and CPU over time, detection latency.")

    @Option(help: "Minutes of steady probing before the detection measurements.")
    var minutes: Double = 10

    @Option(help: "Number of probes (half tcp, half sip_options over UDP, TCP and TLS).")
    var probes: Int = 200

    @Option(help: "Seconds between rounds.")
    var interval: Double = 1

    @Option(help: "Probe timeout, seconds (shorter than the interval, so rounds keep the interval's cadence).")
    var timeout: Double = 0.5

    @Option(help: "Consecutive failures before a probe is down.")
    var fall: Int = 3

    @Option(help: "Consecutive successes before a probe is up again.")
    var rise: Int = 2

    @Flag(help: "Also print failed attempts and the slowest attempt per target at each sample.")
    var verbose = false

    @Option(help: "Seconds between samples.")
    var sampleEvery: Double = 10

    func run() async throws {
        let lab = try LabDirectory(prefix: "standby-bench-probes")
        defer { lab.remove() }
        let server = try SIPServer.start(in: lab)
        defer { server.stop() }
        let options = ProbeOptions(caFile: server.caFile)
        let probeTimeout = Duration.milliseconds(Int64(timeout * 1000))
        let uris = [server.uri("udp"), server.uri("tcp"), server.uri("tls")]
        let list = try (0..<probes).map { index -> Probe in
            let target: ProbeTarget =
                index % 2 == 0
                ? .tcp(HostPort(host: "127.0.0.1", port: index % 4 == 0 ? server.port : server.tlsPort))
                : .sipOptions(try SIPTarget(parsing: uris[(index / 2) % 3]))
            return Probe(name: "p\(index)", site: .primary, target: target, timeout: probeTimeout, options: options)
        }
        let logger = Logger(label: "standby.bench.probes") { _ in SwiftLogNoOpLogHandler() }
        let history = try HealthHistory(directory: try lab.directory("state"))
        let intervalDuration = Duration.milliseconds(Int64(interval * 1000))
        let watcher = try HealthWatcher(
            probes: list,
            configuration: try WatchConfiguration(
                interval: intervalDuration, hysteresis: try Hysteresis(fall: fall, rise: rise)),
            history: history, check: HealthCheck(logger: logger, maximumInFlight: probes), sender: nil, logger: logger)
        let log = BenchLog()
        let watching = Task { try await watcher.run { log.record($0) } }
        defer { watching.cancel() }

        let kinds =
            "\(list.filter { $0.target.kind == "tcp" }.count) tcp + \(list.filter { $0.target.kind == "sip_options" }.count) sip_options (UDP/TCP/TLS)"
        print(
            "\(probes) probes (\(kinds)) against kamailio on 127.0.0.1, every \(interval) s, timeout \(timeout) s, fall \(fall), rise \(rise)"
        )
        guard await log.waitFor(.up, after: .now, deadline: .seconds(30)) != nil else {
            throw ValidationError("the primary never came up: \(log.lastDetail)")
        }
        print("")
        print(
            "  time   rounds  slowest probe ms (avg/max)  RSS MiB  CPU s (user+sys)  CPU % of one core  results stored")
        let started = ContinuousClock.now
        let cpuStart = Usage.cpuSeconds()
        var lastCPU = cpuStart
        var lastSample = started
        var samples: [(rss: Double, cpu: Double)] = []
        let total = Duration.milliseconds(Int64(minutes * 60_000))
        while started.duration(to: .now) < total {
            try await Task.sleep(for: .milliseconds(Int64(sampleEvery * 1000)))
            let now = ContinuousClock.now
            let cpu = Usage.cpuSeconds()
            let rss = Usage.residentMiB()
            let share = (cpu - lastCPU) / lastSample.duration(to: now).timeInterval * 100
            let rounds = log.takeRoundStats()
            samples.append((rss, share))
            print(
                String(
                    format: "%5.0fs  %7d  %12.1f / %-12.1f  %7.1f  %16.2f  %17.1f  %14d",
                    started.duration(to: now).timeInterval, log.roundCount, rounds.average, rounds.maximum, rss,
                    cpu - cpuStart, share, try history.resultCount()))
            lastCPU = cpu
            lastSample = now
            if verbose {
                let targets = log.takeTargetStats()
                print("         failed attempts \(targets.downs); slowest ms by target: \(targets.slowest)")
            }
        }
        if let first = samples.first, let last = samples.last {
            let rsses = samples.map(\.rss)
            print(
                String(
                    format: "RSS first %.1f MiB, last %.1f MiB, min %.1f, max %.1f; CPU %% first %.1f, last %.1f",
                    first.rss, last.rss, rsses.min() ?? 0, rsses.max() ?? 0, first.cpu, last.cpu))
        }

        let bound = intervalDuration * fall + probeTimeout
        print("")
        print(
            "detection (bound fall × interval + timeout = \(bound.timeInterval) s; the watcher's view, at the end of the round):"
        )
        // A hang: kamailio frozen. TCP connects still complete (the kernel accepts), SIP and TLS time out.
        server.process.signal(SIGSTOP)
        let frozenAt = ContinuousClock.now
        let hung = await log.waitFor(nil, after: frozenAt, deadline: .seconds(60))
        report("server hung (SIGSTOP)", hung, since: frozenAt, bound: bound)
        server.process.signal(SIGCONT)
        let resumedAt = ContinuousClock.now
        let recovered = await log.waitFor(.up, after: resumedAt, deadline: .seconds(60))
        report("server resumed (SIGCONT)", recovered, since: resumedAt, bound: intervalDuration * rise + probeTimeout)
        // A crash: every process of the server killed; connections are refused at once.
        let killedAt = ContinuousClock.now
        server.stop()
        let crashed = await log.waitFor(.unreachable, after: killedAt, deadline: .seconds(60))
        report("server killed", crashed, since: killedAt, bound: bound)
        watching.cancel()
        _ = try? await watching.value
        let size = (try? FileManager.default.attributesOfItem(atPath: history.path)[.size] as? Int) ?? 0
        print(
            String(
                format: "history: %d results, %.1f MiB (WAL not counted)", try history.resultCount(),
                Double(size) / 1_048_576))
    }

    private func report(
        _ what: String, _ seen: (at: ContinuousClock.Instant, verdict: SiteVerdict)?, since: ContinuousClock.Instant,
        bound: Duration
    ) {
        guard let seen else {
            print("  \(what): no verdict change within 60 s")
            return
        }
        let latency = since.duration(to: seen.at)
        print(
            String(
                format: "  %@: verdict %@ after %.2f s (bound %.1f s)", what, seen.verdict.rawValue,
                latency.timeInterval,
                bound.timeInterval))
    }
}

/// What the benchmark sees of the watcher's rounds.
final class BenchLog: Sendable {
    private struct State {
        var rounds = 0
        var durations: [Double] = []
        var lastRoundEnd: ContinuousClock.Instant?
        var verdicts: [(at: ContinuousClock.Instant, verdict: SiteVerdict)] = []
        var lastDetail = ""
        var slowestByTarget: [String: Double] = [:]
        var downs = 0
    }

    private let state = Mutex(State())

    func record(_ round: WatchRound) {
        let now = ContinuousClock.now
        let slowest = round.results.map(\.latencyMilliseconds).max() ?? 0
        if ProcessInfo.processInfo.environment["BENCH_DEBUG"] != nil {
            let downs = round.results.filter { $0.outcome == .down }
            print(
                "round \(round.number) at \(Date()) slowest \(Int(slowest)) ms, down \(downs.count): \(downs.first?.detail ?? "")"
            )
        }
        state.withLock { state in
            state.rounds = round.number
            state.durations.append(slowest)
            for transition in round.transitions where transition.isSiteVerdict && transition.site == .primary {
                state.verdicts.append((now, SiteVerdict(rawValue: transition.to) ?? .unknown))
            }
            if let down = round.results.first(where: { $0.outcome == .down }) { state.lastDetail = down.detail }
            state.downs += round.results.filter { $0.outcome == .down }.count
            for result in round.results {
                state.slowestByTarget[result.target] = max(
                    state.slowestByTarget[result.target] ?? 0, result.latencyMilliseconds)
            }
        }
    }

    var roundCount: Int { state.withLock { $0.rounds } }

    /// Failed attempts and the slowest attempt per target since the last call.
    func takeTargetStats() -> (downs: Int, slowest: String) {
        state.withLock { state in
            defer {
                state.slowestByTarget.removeAll()
                state.downs = 0
            }
            let text = state.slowestByTarget.sorted { $0.key < $1.key }.map {
                String(format: "%@ %.0f", $0.key, $0.value)
            }
            return (state.downs, text.joined(separator: ", "))
        }
    }
    var lastDetail: String { state.withLock { $0.lastDetail } }

    /// The slowest probe of each round since the last call: average and maximum, milliseconds.
    func takeRoundStats() -> (average: Double, maximum: Double) {
        state.withLock { state in
            defer { state.durations.removeAll() }
            guard !state.durations.isEmpty else { return (0, 0) }
            return (state.durations.reduce(0, +) / Double(state.durations.count), state.durations.max() ?? 0)
        }
    }

    /// The first primary verdict change after `instant` (to `verdict`, or to anything when nil).
    func waitFor(_ verdict: SiteVerdict?, after instant: ContinuousClock.Instant, deadline: Duration) async
        -> (at: ContinuousClock.Instant, verdict: SiteVerdict)?
    {
        let end = ContinuousClock.now + deadline
        while ContinuousClock.now < end {
            let found = state.withLock { state in
                state.verdicts.first { $0.at > instant && (verdict == nil || $0.verdict == verdict) }
            }
            if let found { return found }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }
}

enum Usage {
    /// User + system CPU time of this process, seconds.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
            + Double(usage.ru_stime.tv_usec) / 1e6
    }

    /// Resident set size of this process, MiB (from /proc/self/statm).
    static func residentMiB() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Double(fields[1]) else { return 0 }
        return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
    }
}

extension Duration {
    fileprivate var timeInterval: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
