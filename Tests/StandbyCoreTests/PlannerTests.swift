import Foundation
import Testing

@testable import StandbyCore

@Suite("The failover plan")
struct PlannerTests {
    static let extraServices = """
          - name: voice
            tier: core
            priority: 2
            depends_on: [core]
            roles: [mediation]
            backup_sets: [settings]
            steps:
              - { name: start, exec: [/bin/true] }
          - name: directory
            tier: core
            priority: 1
            roles: [front-end]
            backup_sets: [settings]
            steps:
              - { name: sync, exec: [/bin/true] }
          - name: archiving
            tier: optional
            priority: 5
            roles: [archiving]
            steps:
              - { name: start, exec: [/bin/true] }
          - name: group-chat
            tier: optional
            priority: 6
            roles: [group-chat]
            at_secondary: false
            reason: Rebuilt after recovery
        dns:
        """

    func plan(_ scenario: String = "site-loss", now: Date = Fixture.now) throws -> FailoverPlan {
        let text = try Fixture.minimal([("dns:\n", Self.extraServices + "\n")])
        return try Planner(topology: try topology(text), now: now).plan(scenario: scenario)
    }

    @Test func stagesAndServiceOrder() throws {
        let p = try plan()
        #expect(p.stages.map(\.kind) == [.core, .dns, .optional])
        // Priority 1 first (core and directory, by name), then voice which depends on core.
        #expect(p.stages[0].services.map(\.name) == ["core", "directory", "voice"])
        #expect(p.stages[0].services[2].order == "priority 2, after core (depends_on)")
        #expect(p.stages[2].services.map(\.name) == ["conferencing", "archiving"])
        #expect(
            p.stages[0].services[0].steps.map(\.id) == ["core/restore-rtc-db", "core/start", "core/probe-fe-secondary"])
        #expect(p.notRestored.map(\.service) == ["group-chat"])
        #expect(p.notRestored.first?.reason == "Rebuilt after recovery")
    }

    @Test func dependencyBeatsPriority() {
        func service(_ name: String, _ priority: Int, _ deps: [String]) -> Service {
            Service(
                name: name, tier: .core, priority: priority, dependsOn: deps, backupSets: [], roles: [], steps: [],
                drillSteps: nil, failbackSteps: [], atSecondary: true, reason: nil, description: nil,
                location: .unknown,
                dependsOnLocation: .unknown, backupSetsLocation: .unknown)
        }
        let ordered = Planner.order([service("a", 1, ["c"]), service("b", 2, []), service("c", 3, [])])
        #expect(ordered.map(\.name) == ["b", "c", "a"])
    }

    @Test func dnsChangesGoFromPrimaryToSecondary() throws {
        let dns = try #require(try plan().stages.first { $0.kind == .dns })
        #expect(dns.dnsChanges.map(\.name) == ["_sipinternaltls._tcp.fabrikam.com.", "_sip._tcp.fabrikam.com."])
        #expect(dns.dnsChanges[0].from == ["0 0 5061 pool01.fabrikam.com."])
        #expect(dns.dnsChanges[0].to == ["0 0 5061 pool02-dr.fabrikam.com."])
    }

    @Test func failbackRunsTheOtherWay() throws {
        let text = try Fixture.minimal()
        let p = try Planner(topology: try topology(text), now: Fixture.now).plan(direction: .failback)
        #expect(p.direction == .failback)
        let dns = try #require(p.stages.first { $0.kind == .dns })
        #expect(dns.dnsChanges[0].from == ["0 0 5061 pool02-dr.fabrikam.com."])
        #expect(dns.dnsChanges[0].to == ["0 0 5061 pool01.fabrikam.com."])
        // Optional services come back in the primary's off-peak window (Paris, 20:00-06:00): 19:00 UTC.
        #expect(p.stages.last?.opensAt == ISO8601DateFormatter().date(from: "2026-11-25T19:00:00Z"))
    }

    @Test func offPeakStageOpensInTheSecondarysLocalTime() throws {
        // 12:00 UTC is 07:00 in Montreal; the 22:00-05:00 window opens at 22:00 EST = 03:00 UTC next day.
        let optional = try #require(try plan().stages.last)
        #expect(optional.waitsForOffPeak)
        #expect(optional.opensAt == ISO8601DateFormatter().date(from: "2026-11-26T03:00:00Z"))
        #expect(optional.opensAtLocal == "Wed 2026-11-25 22:00 EST")
        #expect(optional.closesAt == nil)
    }

    @Test func insideTheWindowTheOffPeakStageIsOpenUntilItCloses() throws {
        // 04:00 UTC is 23:00 in Montreal: the 22:00-05:00 window is open until 05:00 EST.
        let now = try #require(ISO8601DateFormatter().date(from: "2026-11-26T04:00:00Z"))
        let optional = try #require(try plan(now: now).stages.last)
        #expect(optional.opensAt == now)
        #expect(optional.closesAt == ISO8601DateFormatter().date(from: "2026-11-26T10:00:00Z"))
        #expect(optional.closesAtLocal == "Thu 2026-11-26 05:00 EST")
    }

    @Test func partialLossesSelectTheirServicesAndMoveNoDNS() throws {
        let archiving = try plan("archiving-server")
        #expect(archiving.stages.map(\.kind) == [.core, .optional])
        #expect(archiving.stages.flatMap(\.services).map(\.name) == ["archiving"])
        let pool = try plan("enterprise-pool-servers")
        #expect(pool.stages.flatMap(\.services).map(\.name) == ["core", "directory"])
        let chat = try plan("group-chat-server")
        #expect(chat.stages.flatMap(\.services).isEmpty)
        #expect(chat.notRestored.map(\.service) == ["group-chat"])
        #expect(throws: PlanError.self) { try plan("meteor-strike") }
    }
}
