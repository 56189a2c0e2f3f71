import Foundation
import StandbyCore
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exec step starts with the controller's environment minus its secrets, plus its own `env:`.
@Suite("exec steps: the environment")
struct StepEnvironmentTests {
    static let secrets = [
        "STANDBY_SOURCE_USER": "svc-backup", "STANDBY_SOURCE_PASSWORD": "source-secret",
        "STANDBY_SSH_KEY": "/etc/standby/id_ed25519", "STANDBY_SSH_KNOWN_HOSTS": "/etc/standby/known_hosts",
        "STANDBY_SSH_HOST_SHA256": "SHA256:pinned", "KRB5CCNAME": "FILE:/tmp/krb5cc_standby",
        "KRB5_KTNAME": "/etc/standby.keytab", "KRB5_CLIENT_KTNAME": "/etc/standby-client.keytab",
        "RUNBOOK_TOKEN": "runbook-secret", "STANDBY_SERVICE_TOKEN": "service-secret",
    ]

    @Test("which variables are secrets")
    func secretNames() {
        for name in Self.secrets.keys { #expect(StepEnvironment.isSecret(name), "\(name)") }
        for name in ["PATH", "HOME", "LANG", "STANDBY_STATE", "STANDBY_DEBUG", "STANDBY_KILL_AT", "KRB5_CONFIG"] {
            #expect(!StepEnvironment.isSecret(name), "\(name)")
        }
        let built = StepEnvironment.build(
            controller: Self.secrets.merging(["PATH": "/usr/bin"]) { a, _ in a },
            step: ["KRB5CCNAME": "FILE:/srv/step/cache"])
        #expect(built == ["PATH": "/usr/bin", "KRB5CCNAME": "FILE:/srv/step/cache"])
    }

    @Test("a real exec step sees none of the controller's secrets, and one its env: passes")
    func stepEnvironment() async throws {
        let lab = try LabDirectory(prefix: "exec-env")
        defer { lab.remove() }
        let fixture = try EngineFixture(
            lab,
            services: """
                  - name: core
                    tier: core
                    priority: 1
                    roles: [front-end]
                    steps:
                      - { name: env, exec: [sh, -c, "env > LAB/env.txt"], env: { STANDBY_SSH_KEY: /srv/step/key } }
                """)
        var engine = fixture.engine(FakeModules(versions: [:]).modules)
        engine.environment = Self.secrets.merging([
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "LANG": "C.UTF-8",
        ]) { a, _ in a }
        let (_, outcome) = try await fixture.failover(engine, now: try date("2026-11-25T23:00:00Z"))
        #expect(outcome == .done)
        let lines = try String(contentsOfFile: lab.file("env.txt"), encoding: .utf8).split(separator: "\n")
        #expect(lines.contains("LANG=C.UTF-8"), "the rest is inherited: \(lines)")
        #expect(lines.contains("STANDBY_SSH_KEY=/srv/step/key"), "the step's own env: \(lines)")
        for (name, value) in Self.secrets where name != "STANDBY_SSH_KEY" {
            #expect(!lines.contains { $0.hasPrefix("\(name)=") }, "\(name) leaked: \(lines)")
            #expect(!lines.contains { $0.contains(value) }, "\(name)'s value leaked: \(lines)")
        }
    }
}
