import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A failover whose optional stage waits for the secondary's off-peak window is finished by
/// `standby run` once the window is open, through the real engine (`standby resume`).
@Suite(.serialized) struct ServiceFailoverTests {
    func site(_ lab: LabDirectory, window: String) throws -> String {
        let effects = lab.file("effects")
        var site = SiteYAML(deployment: "svcfail", domain: "example.test")
        site.secondary.pool = "pool02.example.test"
        site.secondary.offPeak = [window]
        site.services = [
            SiteYAML.service("core", steps: ["{ name: a, exec: [sh, -c, \"echo core >> \(effects)\"] }"]),
            SiteYAML.service(
                "conf", tier: "optional", priority: 4, roles: [],
                steps: ["{ name: start, exec: [sh, -c, \"echo conf >> \(effects)\"] }"], extra: ["depends_on: [core]"]),
        ]
        site.policy = ["last_review: 2026-10-01", "last_drill: 2026-10-01"]
        return try site.write(in: lab) + "/site.yaml"
    }

    @Test func waitingStageIsResumedWhenTheWindowIsOpen() async throws {
        let lab = try LabDirectory(prefix: "standby-service-failover")
        defer { lab.remove() }
        let binary = try StandbyBinary()
        let hour = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date()).hour!
        let closed = String(format: "%02d:00-%02d:00", (hour + 6) % 24, (hour + 7) % 24)
        let open = String(format: "%02d:00-%02d:00", hour, (hour + 2) % 24)
        let state = lab.file("state")

        let path = try site(lab, window: closed)
        let declared = try binary.run(
            ["failover", path, "--state", state, "--declare", "Redmond lost power", "--lead", "alice", "--yes"])
        #expect(declared.status == 4, "\(declared)")

        // The window opens (here: the file says so); the service resumes the run on its own.
        _ = try site(lab, window: open)
        let out = lab.file("run.out")
        let err = lab.file("run.err")
        let command = try binary.start(
            ["run", path, "--state", state, "--listen", "127.0.0.1:0", "--tick-milliseconds", "100"], stdout: out,
            stderr: err)
        defer { command.end() }
        var port = 0
        let deadline = ContinuousClock.now + .seconds(60)
        while port == 0, ContinuousClock.now < deadline {
            if let text = try? String(contentsOfFile: out, encoding: .utf8), let range = text.range(of: "(port ") {
                port = Int(text[range.upperBound...].prefix(while: \.isNumber)) ?? 0
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        try #require(
            port > 0, "standby run did not start: \((try? String(contentsOfFile: err, encoding: .utf8)) ?? "")")
        let status = try await waitForStatus(port: port) { status in
            (status["failover"] as? [String: Any])?["state"] as? String == "done"
        }
        let run = try #require(status["failover"] as? [String: Any])
        #expect(run["lead"] as? String == "alice")
        let effects = (try? String(contentsOfFile: lab.file("effects"), encoding: .utf8)) ?? ""
        #expect(effects == "core\nconf\n")
        #expect(await command.stop() == 0)
        let log = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        #expect(log.contains("job=resume"))
    }
}
