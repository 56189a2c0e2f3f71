import Foundation
import StandbyCore
import StandbyService
import Testing

/// The metrics and the page of a snapshot with a failover in stage 3, a set over its RPO and a
/// site that went down: what the live tests cannot easily stage.
@Suite struct RenderingTests {
    static func snapshot() -> ServiceSnapshot {
        let now = Date(timeIntervalSince1970: 1_795_000_000)
        var s = ServiceSnapshot(
            deployment: "contoso", primarySite: "redmond", secondarySite: "dublin", generatedAt: now,
            startedAt: now - 7200)
        s.sets = [
            .init(
                name: "rtc-db", kind: "database", rpoTargetSeconds: 86400, capturedAt: now - 3600,
                lastVerifiedAt: now - 3000, storedBytes: 1 << 30, versions: 7),
            .init(
                name: "archive \"old\"", kind: "files", rpoTargetSeconds: 3600, capturedAt: now - 7200,
                lastVerifiedAt: now - 7000, storedBytes: 42, versions: 1, replicating: true),
            .init(name: "never", kind: "settings", rpoTargetSeconds: 3600),
        ]
        s.probes = [
            .init(
                name: "fe-sip", site: "primary", kind: "sip_options", target: "sip:pool01", state: "down",
                lastOutcome: "down", latencySeconds: 2.5, at: now, detail: "timeout <after 2.5 s>")
        ]
        s.sites = [.init(site: "primary", verdict: "unreachable", since: now - 1800, detail: "redmond")]
        s.timeline = [
            .init(
                at: now - 1800, subject: "primary", site: "primary", isSite: true, from: "up", to: "unreachable",
                detail: "down: fe-sip"),
            .init(
                at: now - 80000, subject: "primary", site: "primary", isSite: true, from: "unknown", to: "up",
                detail: ""),
        ]
        s.failover = .init(
            runId: "contoso-20261125-2130", scenario: "site-loss", lead: "alice", state: "waiting",
            declaredAt: now - 1500, finishedAt: nil, currentStage: 3, currentStep: "conferencing/start",
            waitingFor: "off-peak window 22:00-05:00",
            stages: [
                .init(
                    number: 1, kind: "core",
                    steps: [
                        .init(
                            id: "core/1", service: "core", summary: "restore rtc-db", state: "succeeded",
                            durationSeconds: 300),
                        .init(
                            id: "core/start", service: "core", summary: "exec", state: "succeeded", durationSeconds: 60),
                    ]),
                .init(
                    number: 2, kind: "dns",
                    steps: [
                        .init(id: "dns/cutover", service: "dns", summary: "SRV", state: "succeeded", durationSeconds: 4)
                    ]),
                .init(
                    number: 3, kind: "optional",
                    steps: [
                        .init(
                            id: "conferencing/start", service: "conferencing", summary: "exec",
                            state: "waiting-off-peak",
                            durationSeconds: nil)
                    ]),
            ])
        return s
    }

    @Test func metricsOfARunningFailoverParse() throws {
        let text = MetricsText.render(Self.snapshot())
        let script = """
            import sys, json
            from prometheus_client.parser import text_string_to_metric_families
            out = []
            for family in text_string_to_metric_families(sys.stdin.read() if len(sys.argv) < 2 else open(sys.argv[1]).read()):
                for s in family.samples: out.append([s.name, s.labels, s.value])
            print(json.dumps(out))
            """
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(UUID().uuidString).txt")
        try Data(text.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let samples = try #require(
            try JSONSerialization.jsonObject(with: Data(try python(script, [file.path]).utf8)) as? [[Any]])
        func value(_ name: String, _ labels: [String: String]) -> Double? {
            samples.first { sample in
                guard sample[0] as? String == name, let l = sample[1] as? [String: String] else { return false }
                return labels.allSatisfy { l[$0.key] == $0.value }
            }?[2] as? Double
        }
        #expect(value("standby_set_rpo_age_seconds", ["set": "rtc-db"]) == 3600)
        #expect(value("standby_set_rpo_age_seconds", ["set": "archive \"old\""]) == 7200)
        #expect(value("standby_set_rpo_age_seconds", ["set": "never"]) == nil)
        #expect(value("standby_set_replicating", ["set": "archive \"old\""]) == 1)
        #expect(value("standby_probe_latency_seconds", ["probe": "fe-sip"]) == 2.5)
        #expect(value("standby_failover_active", ["run": "contoso-20261125-2130"]) == 1)
        #expect(value("standby_failover_stage", ["run": "contoso-20261125-2130", "state": "waiting"]) == 3)
        #expect(value("standby_failover_step_info", ["stage": "3", "step": "conferencing/start"]) == 1)
        #expect(value("standby_failover_duration_seconds", ["run": "contoso-20261125-2130"]) == 1500)
        #expect(value("standby_failover_step_duration_seconds", ["step": "core/1", "state": "succeeded"]) == 300)
    }

    @Test func pageShowsTheRunTheBreachAndEscapesText() {
        let html = StatusPage.render(Self.snapshot())
        #expect(html.contains("contoso-20261125-2130"))
        #expect(html.contains("Stage 3: optional"))
        #expect(html.contains("waiting for off-peak window 22:00-05:00"))
        #expect(html.contains("4/5 steps") == false && html.contains("3/4 steps"))
        // Over its target: red; no verified version: red with words.
        #expect(html.contains("archive &quot;old&quot; ⟳"))
        #expect(html.contains("2h / 1h"))
        #expect(html.contains("none verified / 1h"))
        #expect(html.contains("#b42318"))
        #expect(html.contains("timeout &lt;after 2.5 s&gt;"))
        #expect(!html.contains("<script") && !html.contains("src=\"http"))
    }
}
