import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Three core steps (the middle one idempotent) and one optional service, every step appending a line.
let threeSteps = """
      - name: core
        tier: core
        priority: 1
        roles: [front-end]
        steps:
          - { name: a, exec: [sh, -c, "echo core-a >> EFFECTS"] }
          - { name: b, exec: [sh, -c, "echo core-b >> EFFECTS"], idempotent: true }
          - { name: c, exec: [sh, -c, "echo core-c {{deployment}} {{secondary_pool}} >> EFFECTS"] }
      - name: conf
        tier: optional
        priority: 5
        depends_on: [core]
        roles: [front-end]
        steps:
          - { name: start, exec: [sh, -c, "echo conf-start >> EFFECTS"] }
    """

/// Inside the secondary's off-peak window (22:00-05:00 UTC), so stage 2 runs at once.
let offPeakNow = "2026-11-25T23:00:00Z"

@Suite("standby failover, resume, confirm, retry, skip, abort", .tags(.failover), .serialized)
struct FailoverCommandTests {
    let standby: StandbyRunner

    init() throws { standby = try StandbyRunner.locate() }

    func failover(
        _ site: EngineSite, lead: String = "alice", now: String = offPeakNow, extra: [String] = [],
        environment: [String: String] = [:]
    )
        async throws -> StandbyRunner.Result
    {
        try await standby.run(
            [
                "failover", site.directory, "--state", site.state, "--declare", "Redmond lost power", "--lead", lead,
                "--yes", "--now", now,
            ] + extra,
            environment: environment, in: site.lab)
    }

    func command(_ site: EngineSite, _ verb: String, _ arguments: [String] = []) async throws -> StandbyRunner.Result {
        try await standby.run([verb, site.directory, "--state", site.state] + arguments, in: site.lab)
    }

    @Test("a failover runs every stage once, in plan order")
    func runsEverything() async throws {
        let lab = try LabDirectory(prefix: "engine-cli")
        defer { lab.remove() }
        let site = try EngineSite(lab: lab, services: threeSteps)
        let result = try await failover(site)
        #expect(result.status == 0, "\(result)")
        #expect(site.lines == ["core-a", "core-b", "core-c enginetest pool02.example.test", "conf-start"])
        let status = try await command(site, "status", ["--json"])
        #expect(status.stdout.contains("\"state\" : \"done\""), "\(status)")
    }

    /// Kill -9 at every step boundary: after `running` is committed (before the side effect),
    /// after the side effect (before the end is committed), and after the end is committed.
    @Test(
        "kill -9 at a step boundary, then resume: no side effect twice",
        arguments: ["core/a", "core/b", "core/c", "conf/start"], ["before", "after", "committed"])
    func killAtBoundary(step: String, point: String) async throws {
        let lab = try LabDirectory(prefix: "engine-kill")
        defer { lab.remove() }
        let site = try EngineSite(lab: lab, services: threeSteps)
        let killed = try await failover(site, environment: ["STANDBY_KILL_AT": "\(step):\(point)"])
        #expect(killed.signal == SIGKILL, "\(killed)")

        var rounds = 0
        while true {
            rounds += 1
            try #require(rounds < 6, "the run never finished")
            let resumed = try await command(site, "resume", ["--at", offPeakNow])
            if resumed.status == 0 { break }
            // A non-idempotent step caught running halts the run: the lead checks the side effect
            // (here: the line in the file) and retries or skips.
            #expect(resumed.status == 1, "\(resumed)")
            #expect(resumed.stdout.contains("halted at \(step)"), "\(resumed)")
            #expect(step != "core/b", "an idempotent step reruns by itself")
            let happened = site.lines.contains {
                $0.hasPrefix(step == "conf/start" ? "conf-start" : "core-\(step.suffix(1))")
            }
            let decided =
                happened
                ? try await command(
                    site, "skip",
                    [step, "--reason", "it did run: the line is there", "--lead", "bob", "--at", offPeakNow])
                : try await command(
                    site, "retry", [step, "--lead", "bob", "--reason", "never started", "--at", offPeakNow])
            #expect(decided.status == 0, "\(decided)")
            break
        }
        #expect(site.count("core-a") == 1)
        #expect(site.count("core-c enginetest pool02.example.test") == 1)
        #expect(site.count("conf-start") == 1)
        // The idempotent step may run a second time when caught between its effect and its commit.
        let b = site.count("core-b")
        #expect(b == (step == "core/b" && point == "after" ? 2 : 1), "core-b ran \(b) times")
        let status = try await command(site, "status", ["--json"])
        #expect(status.stdout.contains("\"state\" : \"done\""), "\(status)")
    }

    @Test("kill -9 from outside during a long step; resume halts on it; skip continues")
    func killDuringLongStep() async throws {
        let lab = try LabDirectory(prefix: "engine-long")
        defer { lab.remove() }
        let site = try EngineSite(
            lab: lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: a, exec: [sh, -c, "echo core-a >> EFFECTS"] }
                      - { name: long, exec: [sh, -c, "echo $$ > LAB/long.pid; echo long-start >> EFFECTS; sleep 60; echo long-end >> EFFECTS"] }
                      - { name: c, exec: [sh, -c, "echo core-c >> EFFECTS"] }
                """)
        let running = try standby.start(
            ["failover", site.directory, "--state", site.state, "--declare", "lost", "--lead", "alice", "--yes"],
            in: lab)
        let deadline = ContinuousClock.now + .seconds(30)
        while !site.lines.contains("long-start") {
            try #require(ContinuousClock.now < deadline, "the long step never started")
            try await Task.sleep(for: .milliseconds(20))
        }
        kill(running.pid, SIGKILL)
        let killed = await running.wait()
        #expect(killed.signal == SIGKILL)
        // The step's own process group outlives the controller; stop it as an operator would.
        let stepPid = try String(contentsOfFile: lab.file("long.pid"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        defer { kill(-(pid_t(stepPid) ?? 0), SIGKILL) }

        let status = try await command(site, "status")
        #expect(status.stdout.contains("core/long: running"), "\(status)")
        let resumed = try await command(site, "resume")
        #expect(resumed.status == 1, "\(resumed)")
        #expect(resumed.stdout.contains("halted at core/long"), "\(resumed)")
        #expect(resumed.stdout.contains("pid \(stepPid)"), "the journal names the step's process: \(resumed)")
        let again = try await command(site, "resume")
        #expect(again.status == 1, "a halted run stays halted until a decision")
        let skipped = try await command(
            site, "skip", ["core/long", "--reason", "finished it by hand", "--lead", "alice"])
        #expect(skipped.status == 0, "\(skipped)")
        #expect(site.lines == ["core-a", "long-start", "core-c"])
    }

    /// An idempotent step that takes two seconds and notes when it starts and ends, with its pid.
    static let slowIdempotent = """
          - name: core
            tier: core
            priority: 1
            roles: [front-end]
            steps:
              - { name: start-front-end, exec: [sh, -c, "echo start $(date +%s%N) $$ >> LAB/times; sleep 2; echo end $(date +%s%N) $$ >> LAB/times"], idempotent: true, timeout: 30s }
              - { name: after, exec: [sh, -c, "echo after >> EFFECTS"] }
        """

    /// The `times` lines: (start or end, nanoseconds, pid).
    func times(_ lab: LabDirectory) -> [(what: String, at: Int, pid: String)] {
        ((try? String(contentsOfFile: lab.file("times"), encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            let fields = $0.split(separator: " ")
            guard fields.count == 3, let at = Int(fields[1]) else { return nil }
            return (String(fields[0]), at, String(fields[2]))
        }
    }

    /// Starts a failover, waits until the slow step runs and the journal holds its process, then
    /// kill -9 of the controller alone (the step, in its own process group, keeps running).
    func killWhileSlowStepRuns(_ site: EngineSite) async throws -> String {
        let running = try standby.start(
            ["failover", site.directory, "--state", site.state, "--declare", "lost", "--lead", "alice", "--yes"],
            in: site.lab)
        let deadline = ContinuousClock.now + .seconds(30)
        var pid: String?
        while true {
            try #require(
                ContinuousClock.now < deadline, "the slow step never started, or its pid never reached the journal")
            if pid == nil { pid = times(site.lab).first { $0.what == "start" }?.pid }
            // The pid is committed just after the spawn; the step may already be writing by then.
            if let pid, try await command(site, "report", ["--json"]).stdout.contains("\"pid\" : \(pid)") { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        kill(running.pid, SIGKILL)
        let killed = await running.wait()
        #expect(killed.signal == SIGKILL, "\(killed)")
        #expect(times(site.lab).allSatisfy { $0.what == "start" }, "killed while the step still ran")
        return pid ?? ""
    }

    @Test("kill -9 during an idempotent step, resume at once: it waits, the attempts never overlap")
    func resumeWaitsForEarlierAttempt() async throws {
        let lab = try LabDirectory(prefix: "engine-overlap")
        defer { lab.remove() }
        let site = try EngineSite(lab: lab, services: Self.slowIdempotent)
        let firstPid = try await killWhileSlowStepRuns(site)
        defer { kill(-(pid_t(firstPid) ?? 0), SIGKILL) }
        let resumed = try await command(site, "resume")
        #expect(resumed.status == 0, "\(resumed)")
        #expect(
            resumed.stdout.contains(
                "waiting for the earlier attempt of core/start-front-end (pid \(firstPid), started "),
            "\(resumed)")
        let lines = times(lab)
        #expect(lines.map(\.what) == ["start", "end", "start", "end"], "\(lines)")
        #expect(lines[0].pid == firstPid && lines[1].pid == firstPid, "the first attempt ran to its end: \(lines)")
        #expect(lines[2].pid != firstPid, "then a second attempt: \(lines)")
        #expect(lines[2].at > lines[1].at, "the second started after the first ended: \(lines)")
        #expect(site.lines == ["after"])
    }

    @Test("kill -9 during an idempotent step, resume --kill-orphans: the earlier attempt is ended, then rerun")
    func resumeKillsOrphans() async throws {
        let lab = try LabDirectory(prefix: "engine-orphans")
        defer { lab.remove() }
        let site = try EngineSite(lab: lab, services: Self.slowIdempotent)
        let firstPid = try await killWhileSlowStepRuns(site)
        defer { kill(-(pid_t(firstPid) ?? 0), SIGKILL) }
        let resumed = try await command(site, "resume", ["--kill-orphans"])
        #expect(resumed.status == 0, "\(resumed)")
        #expect(resumed.stdout.contains("ended the earlier attempt's process group \(firstPid)"), "\(resumed)")
        let lines = times(lab)
        #expect(!lines.contains { $0.what == "end" && $0.pid == firstPid }, "the first attempt never ended: \(lines)")
        #expect(lines.filter { $0.pid != firstPid }.map(\.what) == ["start", "end"], "the rerun: \(lines)")
        #expect(site.lines == ["after"])
    }

    @Test("step programs inherit none of the controller's secrets; env: passes one explicitly")
    func stepEnvironmentHoldsNoSecrets() async throws {
        let lab = try LabDirectory(prefix: "engine-env")
        defer { lab.remove() }
        let site = try EngineSite(
            lab: lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: env, exec: [sh, -c, "env > LAB/env.txt"] }
                      - { name: key, exec: [sh, -c, "env > LAB/key-env.txt"], env: { STANDBY_SSH_KEY: "${STANDBY_SSH_KEY}" } }
                """)
        let secrets = [
            "STANDBY_SOURCE_USER": "svc-backup", "STANDBY_SOURCE_PASSWORD": "source-secret-1",
            "STANDBY_SSH_KEY": "/etc/standby/id_ed25519", "STANDBY_SSH_KNOWN_HOSTS": "/etc/standby/known_hosts",
            "KRB5CCNAME": "FILE:/tmp/krb5cc_standby_test", "KRB5_KTNAME": "/etc/standby-test.keytab",
            "KRB5_CLIENT_KTNAME": "/etc/standby-client-test.keytab", "RUNBOOK_TOKEN": "runbook-secret-1",
        ]
        let result = try await failover(
            site, environment: secrets.merging(["STANDBY_TEST_PLAIN": "plain"]) { a, _ in a })
        #expect(result.status == 0, "\(result)")
        let plain = try String(contentsOfFile: lab.file("env.txt"), encoding: .utf8)
        #expect(plain.contains("STANDBY_TEST_PLAIN=plain\n"), "the rest is inherited: \(plain)")
        for (name, value) in secrets {
            #expect(!plain.contains("\(name)="), "\(name) reached the step: \(plain)")
            #expect(!plain.contains(value), "\(name)'s value reached the step")
        }
        let keyed = try String(contentsOfFile: lab.file("key-env.txt"), encoding: .utf8)
        #expect(keyed.contains("STANDBY_SSH_KEY=/etc/standby/id_ed25519\n"), "passed by env: \(keyed)")
        #expect(!keyed.contains("STANDBY_SOURCE_PASSWORD="), "and only that one")
    }

    @Test("two failovers at once: exactly one runs, the other is refused naming the holder")
    func twoAtOnce() async throws {
        let lab = try LabDirectory(prefix: "engine-two")
        defer { lab.remove() }
        let site = try EngineSite(
            lab: lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: a, exec: [sh, -c, "echo core-a >> EFFECTS"] }
                      - { name: call, manual: Call the service desk }
                """)
        let arguments = { (lead: String) in
            ["failover", site.directory, "--state", site.state, "--declare", "lost", "--lead", lead, "--yes"]
        }
        let first = try standby.start(arguments("alice"), in: lab)
        let second = try standby.start(arguments("bob"), in: lab)
        let results = [await first.wait(), await second.wait()]
        #expect(results.map(\.status).sorted() == [3, 4], "\(results)")
        let refused = try #require(results.first { $0.status == 3 })
        #expect(refused.stderr.contains("refused"), "\(refused)")
        #expect(refused.stderr.contains("pid"), "names the holder's process: \(refused)")
        #expect(site.count("core-a") == 1)
        // Later too: the waiting run holds the lease.
        let third = try await failover(site, lead: "bob")
        #expect(third.status == 3, "\(third)")
        #expect(third.stderr.contains("declared by"), "\(third)")
        #expect(third.stderr.contains("since"), "\(third)")
    }

    @Test("a step that fails halts the run with its output; retry runs it again")
    func failThenRetry() async throws {
        let lab = try LabDirectory(prefix: "engine-retry")
        defer { lab.remove() }
        let site = try EngineSite(
            lab: lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: check, exec: [sh, -c, "echo attempt >> EFFECTS; test -f LAB/marker || { echo 'marker missing on dub-sql01' >&2; exit 3; }"], retries: 1, retry_delay: 100ms }
                      - { name: after, exec: [sh, -c, "echo after >> EFFECTS"] }
                """)
        let failed = try await failover(site)
        #expect(failed.status == 1, "\(failed)")
        #expect(failed.stdout.contains("halted at core/check"), "\(failed)")
        #expect(failed.stdout.contains("marker missing on dub-sql01"), "shows the step's output: \(failed)")
        #expect(site.lines == ["attempt", "attempt"], "one retry configured")
        let notLead = try await command(site, "retry", ["core/check", "--lead", "mallory"])
        #expect(notLead.status == 3, "\(notLead)")
        try lab.write("marker", "")
        let retried = try await command(site, "retry", ["core/check", "--lead", "bob", "--reason", "marker restored"])
        #expect(retried.status == 0, "\(retried)")
        #expect(site.lines == ["attempt", "attempt", "attempt", "after"])
        let report = try await command(site, "report", ["--json"])
        #expect(report.stdout.contains("\"kind\" : \"retry\""), "\(report)")
        #expect(report.stdout.contains("marker restored"))
    }

    @Test("a manual step pauses the run (exit 4) until a lead confirms it")
    func manualStep() async throws {
        let lab = try LabDirectory(prefix: "engine-manual")
        defer { lab.remove() }
        let site = try EngineSite(
            lab: lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: a, exec: [sh, -c, "echo core-a >> EFFECTS"] }
                      - { name: rehome, manual: Re-home users to pool02, owner: ucc-admins }
                      - { name: c, exec: [sh, -c, "echo core-c >> EFFECTS"] }
                """)
        let waiting = try await failover(site)
        #expect(waiting.status == 4, "\(waiting)")
        #expect(waiting.stdout.contains("Re-home users to pool02"), "\(waiting)")
        let status = try await command(site, "status")
        #expect(status.stdout.contains("core/rehome: waiting-confirm"), "\(status)")
        let resumed = try await command(site, "resume")
        #expect(resumed.status == 4, "still waiting: \(resumed)")
        #expect(site.lines == ["core-a"])
        let early = try await command(site, "confirm", ["core/c", "--lead", "bob"])
        #expect(early.status == 2, "only the waiting manual step is confirmed: \(early)")
        let confirmed = try await command(
            site, "confirm", ["core/rehome", "--lead", "bob", "--note", "all 4,200 users moved"])
        #expect(confirmed.status == 0, "\(confirmed)")
        #expect(site.lines == ["core-a", "core-c"])
        let report = try await command(site, "report")
        #expect(report.stdout.contains("confirm"), "\(report)")
        #expect(report.stdout.contains("all 4,200 users moved"), "\(report)")
    }

    @Test("optional services wait for the off-peak window (exit 4), then run when it opens")
    func offPeakWindow() async throws {
        let lab = try LabDirectory(prefix: "engine-offpeak")
        defer { lab.remove() }
        let site = try EngineSite(lab: lab, services: threeSteps)
        let noon = "2026-11-25T12:00:00Z"
        let waiting = try await failover(site, now: noon)
        #expect(waiting.status == 4, "\(waiting)")
        #expect(waiting.stdout.contains("next opens Wed 2026-11-25 22:00"), "says when, local time: \(waiting)")
        #expect(!site.lines.contains("conf-start"))
        let stillWaiting = try await command(site, "resume", ["--at", "2026-11-25T21:59:00Z"])
        #expect(stillWaiting.status == 4, "\(stillWaiting)")
        #expect(!site.lines.contains("conf-start"))
        let opened = try await command(site, "resume", ["--at", "2026-11-25T22:00:00Z"])
        #expect(opened.status == 0, "\(opened)")
        #expect(site.count("conf-start") == 1)
        #expect(site.count("core-a") == 1)
    }

    @Test("resume --now SERVICE runs an optional service outside the window, recording who and why")
    func runServiceNow() async throws {
        let lab = try LabDirectory(prefix: "engine-now")
        defer { lab.remove() }
        let site = try EngineSite(lab: lab, services: threeSteps)
        let waiting = try await failover(site, now: "2026-11-25T12:00:00Z")
        #expect(waiting.status == 4, "\(waiting)")
        let noLead = try await command(site, "resume", ["--now", "conf"])
        #expect(noLead.status == 2, "\(noLead)")
        let now = try await command(
            site, "resume",
            [
                "--now", "conf", "--lead", "alice", "--reason", "conferencing needed for the board", "--at",
                "2026-11-25T12:05:00Z",
            ])
        #expect(now.status == 0, "\(now)")
        #expect(site.count("conf-start") == 1)
        let report = try await command(site, "report", ["--json"])
        #expect(report.stdout.contains("\"kind\" : \"override\""), "\(report)")
        #expect(report.stdout.contains("conferencing needed for the board"))
    }

    @Test("skip a waiting optional service by name")
    func skipService() async throws {
        let lab = try LabDirectory(prefix: "engine-skip")
        defer { lab.remove() }
        let site = try EngineSite(lab: lab, services: threeSteps)
        _ = try await failover(site, now: "2026-11-25T12:00:00Z")
        let skipped = try await command(site, "skip", ["conf", "--reason", "not needed this week", "--lead", "bob"])
        #expect(skipped.status == 0, "\(skipped)")
        #expect(!site.lines.contains("conf-start"))
    }

    @Test("abort ends the run and releases the lease; a new run may be declared")
    func abort() async throws {
        let lab = try LabDirectory(prefix: "engine-abort")
        defer { lab.remove() }
        let site = try EngineSite(
            lab: lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: a, exec: [sh, -c, "echo core-a >> EFFECTS"] }
                      - { name: call, manual: Call the service desk }
                """)
        #expect(try await failover(site).status == 4)
        let aborted = try await command(
            site, "abort", ["--reason", "false alarm: the primary is back", "--lead", "alice"])
        #expect(aborted.status == 0, "\(aborted)")
        let status = try await command(site, "status")
        #expect(status.stdout.contains("aborted"), "\(status)")
        let resumed = try await command(site, "resume")
        #expect(resumed.status == 0)
        #expect(resumed.stdout.contains("Nothing to resume"), "\(resumed)")
        let again = try await failover(site)
        #expect(again.status == 4, "a new run after the abort: \(again)")
        #expect(site.count("core-a") == 2, "one per run")
    }

    @Test("resume after a declaration that died in preflight: exit 3, no run; after a finished run: exit 0")
    func resumeAfterPreflightDeath() async throws {
        let lab = try LabDirectory(prefix: "engine-preflight")
        defer { lab.remove() }
        let oneStep = """
              - name: core
                tier: core
                priority: 1
                roles: [front-end]
                steps:
                  - { name: a, exec: [sh, -c, "echo core-a >> EFFECTS"] }
            """
        // The same service needing a backup set that has no verified copy: preflight refuses.
        let needsACopy = oneStep.replacingOccurrences(
            of: "roles: [front-end]", with: "roles: [front-end]\n    backup_sets: [rtc-db]")
        let rtcDB = "{ name: rtc-db, kind: database, source: \"file://\(lab.path)/rtc.bak\", rpo: 1h }"
        let site = try EngineSite(lab: lab, services: needsACopy, backupSets: [rtcDB])
        let answer = "no run: the declaration did not complete; declare again"

        // Nothing was ever declared.
        let never = try await command(site, "resume")
        #expect(never.status == 3, "\(never)")
        #expect(never.stderr.contains(answer) && never.stderr.contains("has no failover run"), "\(never)")

        // Refused in preflight: no run exists, and resume says so.
        let refused = try await failover(site)
        #expect(refused.status == 3, "\(refused)")
        #expect(refused.stderr.contains("core backup set rtc-db"), "\(refused)")
        let afterRefusal = try await command(site, "resume")
        #expect(afterRefusal.status == 3, "\(afterRefusal)")
        #expect(afterRefusal.stderr.contains(answer), "\(afterRefusal)")
        #expect(afterRefusal.stderr.contains("alice") && afterRefusal.stderr.contains("rtc-db"), "\(afterRefusal)")
        #expect(!afterRefusal.stdout.contains("Nothing to resume"), "\(afterRefusal)")

        // A run that completes; resume then says it is done (exit 0).
        _ = try EngineSite(lab: lab, services: oneStep)
        #expect(try await failover(site).status == 0)
        let afterDone = try await command(site, "resume")
        #expect(afterDone.status == 0, "\(afterDone)")
        #expect(afterDone.stdout.contains("Nothing to resume: the last run") && afterDone.stdout.contains("is done"))

        // A newer declaration refused in preflight: not "done" any more; the older run is named.
        _ = try EngineSite(lab: lab, services: needsACopy, backupSets: [rtcDB])
        #expect(try await failover(site).status == 3)
        let afterNewerRefusal = try await command(site, "resume")
        #expect(afterNewerRefusal.status == 3, "\(afterNewerRefusal)")
        #expect(afterNewerRefusal.stderr.contains(answer), "\(afterNewerRefusal)")
        #expect(afterNewerRefusal.stderr.contains("the run before it"), "\(afterNewerRefusal)")

        // The controller killed after preflight, holding the lease of a run never recorded.
        _ = try EngineSite(lab: lab, services: oneStep)
        let killed = try await failover(site, environment: ["STANDBY_KILL_AT": "declare:before"])
        #expect(killed.signal == SIGKILL, "\(killed)")
        let afterKill = try await command(site, "resume")
        #expect(afterKill.status == 3, "\(afterKill)")
        #expect(afterKill.stderr.contains(answer) && afterKill.stderr.contains("stopped in preflight"), "\(afterKill)")
        // Declaring again works, and then resume has a finished run to speak of.
        #expect(try await failover(site).status == 0)
        #expect(try await command(site, "resume").status == 0)
        #expect(site.count("core-a") == 2)
    }

    @Test("the report times a step from the attempt that succeeded and shows the time lost to a crash apart")
    func reportTimesTheSuccessfulAttempt() async throws {
        let lab = try LabDirectory(prefix: "engine-lost")
        defer { lab.remove() }
        // core/b is idempotent and slow only the first time: the controller is killed after its
        // 3-second first attempt, and resume runs it again in a moment.
        let site = try EngineSite(
            lab: lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: a, exec: [sh, -c, "echo core-a >> EFFECTS"] }
                      - { name: b, exec: [sh, -c, "test -f LAB/once || { touch LAB/once; sleep 3; }; echo core-b >> EFFECTS"], idempotent: true }
                """)
        let killed = try await failover(site, environment: ["STANDBY_KILL_AT": "core/b:after"])
        #expect(killed.signal == SIGKILL, "\(killed)")
        let resumed = try await command(site, "resume", ["--at", offPeakNow])
        #expect(resumed.status == 0, "\(resumed)")

        let json = try await command(site, "report", ["--json"])
        #expect(json.status == 0, "\(json)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let steps = (report["stages"] as? [[String: Any]] ?? []).flatMap { $0["steps"] as? [[String: Any]] ?? [] }
        let b = try #require(steps.first { $0["id"] as? String == "core/b" })
        #expect(b["attempts"] as? Int == 2)
        let duration = try #require(b["durationSeconds"] as? Double)
        let lost = try #require(b["lostSeconds"] as? Double, "\(b)")
        #expect(duration < 2.5, "the successful attempt took a moment, not the crashed one's 3 s: \(b)")
        #expect(lost >= 3, "the first attempt's 3 s are lost: \(b)")
        #expect(b["attemptStartedAt"] != nil)
        // The first attempt's start, the last attempt's start and the end line up.
        let a = try #require(steps.first { $0["id"] as? String == "core/a" })
        #expect(a["lostSeconds"] == nil && a["attempts"] as? Int == 1, "\(a)")

        let html = lab.file("report.html")
        let text = try await command(site, "report", ["--html", html])
        #expect(text.status == 0, "\(text)")
        let line = try #require(
            text.stdout.split(separator: "\n").first { $0.contains("lost") && $0.contains("earlier attempts") },
            "\(text.stdout)")
        #expect(line.contains("lost \(String(format: "%.2fs", lost))"), "\(line)")
        let page = try String(contentsOfFile: html, encoding: .utf8)
        #expect(page.contains("<th class=\"num\">Lost</th>"))
        #expect(page.contains("<td class=\"num lost\">\(String(format: "%.2fs", lost))</td>"), "lost time in the table")
        #expect(page.contains("lost to earlier attempts</title>"), "and in the timeline")
    }

    @Test("refusals: a name not in incident_leads; no terminal and no --yes")
    func refusals() async throws {
        let lab = try LabDirectory(prefix: "engine-refuse")
        defer { lab.remove() }
        let site = try EngineSite(lab: lab, services: threeSteps)
        let stranger = try await failover(site, lead: "mallory")
        #expect(stranger.status == 3, "\(stranger)")
        #expect(stranger.stderr.contains("not an incident lead"), "\(stranger)")
        let unconfirmed = try await standby.run(
            ["failover", site.directory, "--state", site.state, "--declare", "lost", "--lead", "alice"], in: lab)
        #expect(unconfirmed.status == 3, "\(unconfirmed)")
        #expect(unconfirmed.stderr.contains("confirmation needed"), "\(unconfirmed)")
        #expect(site.lines.isEmpty, "nothing ran")
        // Neither left a lease behind.
        #expect(try await failover(site).status == 0)
    }
}
