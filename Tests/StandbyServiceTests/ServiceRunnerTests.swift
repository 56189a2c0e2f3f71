import Foundation
import Logging
import StandbyCore
import StandbyLab
import Synchronization
import Testing

/// Jobs that record what ran; a replication runs until cancelled, a resume takes a moment and
/// ignores cancellation (the runner must shield it).
final class ScriptedJobs: ServiceJobs {
    let ran = Mutex<[String]>([])
    let finished = Mutex<[String]>([])
    let reasons = Mutex<[String: String]>([:])
    let replicationBlocks: Bool

    init(replicationBlocks: Bool) { self.replicationBlocks = replicationBlocks }

    func run(_ job: ServiceJob, reason: String) async throws -> String {
        ran.withLock { $0.append(job.key) }
        reasons.withLock { $0[job.key] = reason }
        switch job {
        case .replicate where replicationBlocks:
            try await Task.sleep(for: .seconds(600))
        case .resumeFailover:
            // Throws if the cancellation reached it: the runner must shield it.
            try await Task.sleep(for: .milliseconds(300))
        default:
            break
        }
        finished.withLock { $0.append(job.key) }
        return "ok"
    }

    func failoverWaiting() async -> Bool { true }
    func lastDrill() async -> Date? { nil }
    func watchHealth() async throws { try await Task.sleep(for: .seconds(600)) }
    func status(_ base: ServiceSnapshot, now: Date) async -> ServiceSnapshot { base }
}

@Suite struct ServiceRunnerTests {
    func poll(_ what: String, _ condition: () -> Bool) async throws {
        // A deadline for a busy CI machine, not a speed goal.
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw LabError(.notReady, "never happened: \(what)")
    }

    @Test func shutdownStopsReplicationAtOnceLetsTheResumeFinishAndTheNextStartContinues() async throws {
        let lab = try LabDirectory(prefix: "standby-runner")
        defer { lab.remove() }
        let topology = try TopologyLoader.parse(SchedulerTests.yaml, file: lab.file("site.yaml"))
        let journal = ServiceJournal(
            store: try StateStore(directory: StateDirectory(explicit: lab.path, deployment: "x")))
        // 22:30 UTC: Dublin's window is open (resume and verify due), New York's closed (no full).
        let now = SchedulerTests.at(22, 30)
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

        let jobs = ScriptedJobs(replicationBlocks: true)
        let runner = ServiceRunner(
            topology: topology, journal: journal, jobs: jobs, logger: logger, tick: .milliseconds(20), clock: { now })
        let task = Task { await runner.run() }
        try await poll("replication and resume started") {
            let ran = jobs.ran.withLock { $0 }
            return ran.contains("replicate:rtc-db") && ran.contains("resume")
        }
        task.cancel()
        await task.value
        // The replication was cut at once; the resume, shielded, finished.
        #expect(jobs.finished.withLock { $0 }.contains("resume"))
        #expect(!jobs.finished.withLock { $0 }.contains("replicate:rtc-db"))
        let records = try journal.records()
        #expect(records["replicate:rtc-db"]?.interrupted == true)
        #expect(records["replicate:rtc-db"]?.detail.contains("stopped by a shutdown") == true)
        #expect(records["resume"]?.lastSucceeded == now)
        // Nothing new started after the cancellation.
        #expect(!jobs.ran.withLock { $0 }.contains("verify-sample"))

        // The next start runs the interrupted replication first, then the rest.
        let again = ScriptedJobs(replicationBlocks: false)
        let second = ServiceRunner(
            topology: topology, journal: journal, jobs: again, logger: logger, tick: .milliseconds(20), clock: { now })
        let secondTask = Task { await second.run() }
        try await poll("the interrupted replication and the verification ran") {
            let done = again.finished.withLock { $0 }
            return done.contains("replicate:rtc-db") && done.contains("verify-sample")
        }
        secondTask.cancel()
        await secondTask.value
        #expect(again.ran.withLock { $0 }.first == "replicate:rtc-db")
        #expect(again.reasons.withLock { $0["replicate:rtc-db"] }?.hasPrefix("continues") == true)
        #expect(try journal.records()["replicate:rtc-db"]?.interrupted == false)
    }
}
