import Foundation
import Testing

@testable import StandbyProbes

@Suite struct HysteresisTests {
    let policy: Hysteresis

    init() throws { policy = try Hysteresis(fall: 3, rise: 2) }

    func result(_ probe: String, _ site: ProbeSite, _ ok: Bool) -> ProbeResult {
        ProbeResult(
            probe: probe, site: site, kind: "tcp", target: "x:1", outcome: ok ? .up : .down, latency: .zero,
            detail: ok ? "connected" : "refused", at: Date())
    }

    @Test func unknownUntilFallOrRise() {
        var health = ProbeHealth()
        #expect(health.record(success: true, policy: policy) == nil)
        #expect(health.state == .unknown)
        #expect(health.record(success: true, policy: policy) == .up)
        var failing = ProbeHealth()
        #expect(failing.record(success: false, policy: policy) == nil)
        #expect(failing.record(success: false, policy: policy) == nil)
        #expect(failing.record(success: false, policy: policy) == .down)
    }

    @Test func oneLostPacketChangesNothing() {
        var health = ProbeHealth()
        _ = health.record(success: true, policy: policy)
        _ = health.record(success: true, policy: policy)
        for ok in [false, true, false, false, true, false, true] {
            #expect(health.record(success: ok, policy: policy) == nil)
        }
        #expect(health.state == .up)
    }

    @Test func downAfterFallUpAfterRise() {
        var health = ProbeHealth()
        let changes = [true, true, false, false, false, false, true, true, true].compactMap {
            health.record(success: $0, policy: policy)
        }
        #expect(changes == [.up, .down, .up])
    }

    @Test func flappingNeverSettlesFromUnknown() {
        var health = ProbeHealth()
        for index in 0..<20 { #expect(health.record(success: index % 2 == 0, policy: policy) == nil) }
        #expect(health.state == .unknown)
    }

    @Test func siteVerdicts() {
        #expect(SiteVerdict.from([]) == .unknown)
        #expect(SiteVerdict.from([.unknown, .unknown]) == .unknown)
        #expect(SiteVerdict.from([.up, .unknown]) == .up)
        #expect(SiteVerdict.from([.up, .down]) == .degraded)
        #expect(SiteVerdict.from([.down, .unknown]) == .degraded)
        #expect(SiteVerdict.from([.down, .down]) == .unreachable)
    }

    @Test func monitorReportsProbeAndSiteTransitions() throws {
        let one = try Hysteresis(fall: 2, rise: 1)
        var monitor = HealthMonitor(
            probes: [("fe-sip", .primary), ("sql", .primary), ("dr-sip", .secondary)], policy: one)
        var transitions = monitor.record([
            result("fe-sip", .primary, true), result("sql", .primary, true), result("dr-sip", .secondary, true),
        ])
        #expect(transitions.filter(\.isSiteVerdict).map(\.to) == ["up", "up"])
        #expect(monitor.verdict(for: .primary) == .up)
        transitions = monitor.record([result("fe-sip", .primary, false), result("sql", .primary, true)])
        #expect(transitions.isEmpty)
        transitions = monitor.record([result("fe-sip", .primary, false), result("sql", .primary, true)])
        #expect(transitions.map(\.subjectName) == ["fe-sip", "primary"])
        #expect(monitor.verdict(for: .primary) == .degraded)
        #expect(transitions.last?.detail == "down: fe-sip")
        _ = monitor.record([result("sql", .primary, false)])
        transitions = monitor.record([result("fe-sip", .primary, false), result("sql", .primary, false)])
        #expect(monitor.verdict(for: .primary) == .unreachable)
        #expect(transitions.last?.from == "degraded" && transitions.last?.to == "unreachable")
        #expect(monitor.verdict(for: .secondary) == .up)
        transitions = monitor.record([result("fe-sip", .primary, true)])
        #expect(monitor.verdict(for: .primary) == .degraded)
        _ = monitor.record([result("unknown-probe", .primary, false)])
        #expect(monitor.verdict(for: .primary) == .degraded)
    }

    @Test func badPolicyIsRefused() {
        #expect(throws: ProbeError.self) { try Hysteresis(fall: 0, rise: 1) }
    }
}
