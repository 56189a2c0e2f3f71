import Foundation
import StandbyCore
import StandbyLab
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A step never runs twice at once: an earlier attempt's process, left by a controller that died,
/// is waited for or ended before the step runs again.
@Suite("exec steps: earlier attempts")
struct EarlierAttemptTests {
    @Test("a process is known by its pid and start time; a different start time is another process")
    func processIdentity() throws {
        let me = try #require(StepProcess.current(pid: Int(getpid())))
        #expect(me.group == Int(getpgrp()))
        #expect(me.isAlive)
        #expect(!StepProcess(pid: me.pid, startTicks: me.startTicks + 1, group: me.group).isAlive, "a reused pid")
        #expect(StepProcess.current(pid: Int(Int32.max)) == nil)
    }

    @Test("the journal records an exec attempt's pid, start time and process group, and keeps them")
    func recordsTheProcess() async throws {
        let lab = try LabDirectory(prefix: "exec-process")
        defer { lab.remove() }
        let fixture = try EngineFixture(lab, services: Self.idempotentStep)
        let engine = fixture.engine(FakeModules(versions: [:]).modules)
        let (run, outcome) = try await fixture.failover(engine, now: try date("2026-11-25T23:00:00Z"))
        #expect(outcome == .done)
        let step = try #require(try fixture.journal.steps(runId: run.id).first)
        let pid = try #require(step.pid)
        #expect(step.processGroup == pid, "its own group")
        #expect(step.processStartTicks != nil)
        #expect(step.attemptStartedAt != nil)
        #expect(step.process?.isAlive == false, "the attempt ended")
    }

    /// A step left `running` by a dead controller while its process (in its own group) still runs.
    func crashedRun(_ fixture: EngineFixture, engine: FailoverEngine, sleeping seconds: Int) async throws -> (
        FailoverRun, RunningCommand
    ) {
        let now = try date("2026-11-25T23:00:00Z")
        let (run, first) = try await fixture.failover(engine, now: now)
        #expect(first == .done)
        let orphan = try StandbyBinary(path: "/bin/sleep").start(
            ["\(seconds)"], stdout: fixture.lab.file("sleep.out"), stderr: fixture.lab.file("sleep.err"))
        var step = try #require(try fixture.journal.steps(runId: run.id).first)
        step.state = .running
        step.finishedAt = nil
        let process = try #require(StepProcess.current(pid: Int(orphan.pid)))
        step.process = process
        step.attemptStartedAt = Date()
        var crashed = run
        crashed.state = .running
        crashed.finishedAt = nil
        try fixture.journal.update(step)
        try fixture.journal.update(crashed)
        return (run, orphan)
    }

    /// The step sleeps a little so that it is still there when its spawn reads `/proc/PID/stat`:
    /// a process already reaped by then leaves only its pid in the journal.
    static let idempotentStep = """
          - name: core
            tier: core
            priority: 1
            roles: [front-end]
            steps:
              - { name: start-front-end, exec: [sh, -c, "sleep 0.2; echo ran >> LAB/effects"], idempotent: true, timeout: 20s }
        """

    @Test("resume waits for a live earlier attempt before running the step again")
    func waitsForEarlierAttempt() async throws {
        let lab = try LabDirectory(prefix: "exec-wait")
        defer { lab.remove() }
        let fixture = try EngineFixture(lab, services: Self.idempotentStep)
        let lines = Mutex<[String]>([])
        let engine = fixture.engine(FakeModules(versions: [:]).modules) { line in lines.withLock { $0.append(line) } }
        let (run, orphan) = try await crashedRun(fixture, engine: engine, sleeping: 1)
        let resumed = ContinuousClock.now
        #expect(try await engine.execute(runId: run.id, now: try date("2026-11-25T23:00:00Z")) == .done)
        #expect(ContinuousClock.now - resumed >= .milliseconds(500), "it waited for the sleep")
        _ = orphan.wait()
        let said = lines.withLock { $0 }.joined(separator: "\n")
        #expect(
            said.contains("waiting for the earlier attempt of core/start-front-end (pid \(orphan.pid), started "),
            "\(said)")
        #expect(try String(contentsOfFile: lab.file("effects"), encoding: .utf8) == "ran\nran\n")
    }

    @Test("with .end (--kill-orphans) the earlier attempt's group is ended at once")
    func endsEarlierAttempt() async throws {
        let lab = try LabDirectory(prefix: "exec-end")
        defer { lab.remove() }
        let fixture = try EngineFixture(lab, services: Self.idempotentStep)
        let lines = Mutex<[String]>([])
        var engine = fixture.engine(FakeModules(versions: [:]).modules) { line in lines.withLock { $0.append(line) } }
        let (run, orphan) = try await crashedRun(fixture, engine: engine, sleeping: 60)
        defer { orphan.kill9() }
        engine.earlierAttempts = .end
        engine.endGrace = .seconds(1)
        let resumed = ContinuousClock.now
        #expect(try await engine.execute(runId: run.id, now: try date("2026-11-25T23:00:00Z")) == .done)
        #expect(ContinuousClock.now - resumed < .seconds(20), "it did not wait for the sleep")
        let (_, signal) = orphan.wait()
        // SIGTERM first; SIGKILL after the grace if the test runner's blocked signals (which
        // posix_spawn hands on to the sleep) kept it from acting on SIGTERM.
        #expect(signal == SIGTERM || signal == SIGKILL, "ended by a signal")
        let said = lines.withLock { $0 }.joined(separator: "\n")
        #expect(said.contains("ended the earlier attempt's process group \(orphan.pid)"), "\(said)")
    }
}
