import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Sources that need credentials (an sftp server that takes only its key, an http server behind
/// Basic auth), read by every path that replicates: the scheduled `standby run`, and failback's
/// reverse and final passes, not only `standby replicate`.
@Suite("source credentials on every replication path", .tags(.server), .serialized)
struct SourceCredentialsTests {
    static let user = "svc-backup"
    static let password = "s3cret-Pa55"

    /// nginx serving `www/` with `/private/` behind Basic auth (an apr1 htpasswd, as `htpasswd`
    /// writes it), and sshd with public-key login only.
    struct Sources {
        let lab: LabDirectory
        let nginx: NginxServer
        let sshd: SSHServer

        init(_ lab: LabDirectory) throws {
            self.lab = lab
            let hash = try Self.apr1(SourceCredentialsTests.password, lab: lab)
            try lab.write("htpasswd", "\(SourceCredentialsTests.user):\(hash)\n")
            let www = try lab.directory("www")
            _ = try lab.directory("www/private")
            _ = try lab.directory("www/private/secondary")
            _ = try lab.directory("www/public")
            nginx = try NginxServer.start(
                in: lab, serving: www,
                extraServer: """
                    location /private/ { auth_basic "backups"; auth_basic_user_file \(lab.file("htpasswd")); }
                    """)
            sshd = try SSHServer.start(in: lab)
        }

        static func apr1(_ password: String, lab: LabDirectory) throws -> String {
            let result = try LabTool.run(
                try Programs.locate("openssl", package: "openssl"), ["passwd", "-apr1", "-stdin"],
                input: password + "\n")
            let hash = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
            guard result.status == 0, hash.hasPrefix("$apr1$") else {
                throw LabError(.setupFailed, "openssl passwd -apr1 failed: \(result.output)")
            }
            return hash
        }

        func stop() {
            nginx.stop()
            sshd.stop()
        }

        /// The access log's lines for `path` (the default format names the user, or "-").
        func requests(to path: String) -> [String] {
            nginx.accessLog { $0.contains(path) }.split(separator: "\n").map(String.init).filter { $0.contains(path) }
        }

        /// What `standby` needs to read both: the Basic credentials and the sftp key.
        var environment: [String: String] {
            [
                "STANDBY_SOURCE_USER": SourceCredentialsTests.user,
                "STANDBY_SOURCE_PASSWORD": SourceCredentialsTests.password,
                "STANDBY_SSH_KEY": sshd.userPrivateKeyPath, "STANDBY_SSH_KNOWN_HOSTS": sshd.knownHostsPath,
                "HOME": lab.path,
            ]
        }

        func write(_ relativePath: String, bytes: Int, seed: UInt8) throws -> String {
            let path = lab.file(relativePath)
            try Data((0..<bytes).map { UInt8(truncatingIfNeeded: $0 * 31 + Int(seed)) }).write(
                to: URL(fileURLWithPath: path))
            return path
        }
    }

    /// A deployment with both sets (each with a failback source behind the same protection),
    /// one core service without DNS, and a probe of the primary (nginx) for failback.
    static func site(_ sources: Sources, offPeak: String = "00:00-23:59") throws -> String {
        let http = sources.nginx.url("private/rtc.bak").absoluteString
        let httpBack = sources.nginx.url("private/secondary/rtc.bak").absoluteString
        let sftp = try #require(sources.sshd.sftpURL(sources.lab.file("primary/config.bak"))).absoluteString
        let sftpBack = try #require(sources.sshd.sftpURL(sources.lab.file("secondary/config.bak"))).absoluteString
        var site = SiteYAML(deployment: "creds", domain: "creds.test")
        site.primary = .init(name: "east", pool: "pool01.creds.test", offPeak: [offPeak])
        site.secondary = .init(
            name: "west", pool: "pool02-dr.creds.test", offPeak: [offPeak], store: sources.lab.file("store"),
            standbyServers: ["{ host: 127.0.2.10, roles: [front-end] }"])
        site.backupSets = [
            "{ name: web-db, kind: database, source: \"\(http)\", failback_source: \"\(httpBack)\", allow_insecure_auth: true, schedule: { every: 4h }, rpo: 24h }",
            "{ name: ssh-db, kind: database, source: \"\(sftp)\", failback_source: \"\(sftpBack)\", schedule: { every: 4h }, rpo: 24h }",
        ]
        site.services = [
            SiteYAML.service(
                "core", roles: [], steps: ["{ name: start, exec: [/bin/true] }"],
                extra: [
                    "backup_sets: [web-db, ssh-db]", "failback_steps: [{ name: start-primary, exec: [/bin/true] }]",
                ])
        ]
        site.health = [
            "interval: 100ms", "rise: 1", "probes:",
            "  - { name: backups, tcp: \"127.0.0.1:\(sources.nginx.port)\", site: primary }",
        ]
        return try site.write(in: sources.lab) + "/site.yaml"
    }

    @Test("standby run and failback's reverse and final passes read sources that need a password or a key")
    func everyPathUsesTheCredentials() async throws {
        let lab = try LabDirectory(prefix: "creds-paths")
        defer { lab.remove() }
        let sources = try Sources(lab)
        defer { sources.stop() }
        _ = try lab.directory("primary")
        _ = try lab.directory("secondary")
        _ = try sources.write("www/private/rtc.bak", bytes: 300_000, seed: 1)
        _ = try sources.write("primary/config.bak", bytes: 200_000, seed: 2)
        let site = try Self.site(sources)
        let state = lab.file("state")
        let standby = try StandbyRunner.locate()

        // The scheduled service: its first round replicates both sets, with the credentials.
        let running = try standby.start(
            ["run", site, "--state", state, "--listen", "127.0.0.1:0", "--tick-milliseconds", "100"],
            environment: sources.environment, in: lab)
        let deadline = ContinuousClock.now + .seconds(60)
        var versions: [String: Int] = [:]
        while ContinuousClock.now < deadline {
            let status = try await standby.run(["status", site, "--state", state, "--json"], in: lab)
            let object = try? JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
            for set in object?["sets"] as? [[String: Any]] ?? [] {
                if let name = set["name"] as? String, let version = set["newestVersion"] as? Int {
                    versions[name] = version
                }
            }
            if versions.count == 2 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        kill(running.pid, SIGTERM)
        _ = await running.wait()
        let runLog = (try? String(contentsOfFile: running.stderrPath, encoding: .utf8)) ?? ""
        #expect(versions.keys.sorted() == ["ssh-db", "web-db"], "standby run replicated: \(versions)\n\(runLog)")
        #expect(!runLog.contains(Self.password), "the password is never logged")

        // The site is lost, then rebuilt: failback reverse-replicates both sets from where they
        // are produced now, behind the same password and key.
        let failover = try await standby.run(
            ["failover", site, "--state", state, "--declare", "east lost", "--lead", "alice", "--yes"],
            environment: sources.environment, in: lab)
        #expect(failover.status == 0, "\(failover)")
        _ = try sources.write("www/private/secondary/rtc.bak", bytes: 310_000, seed: 3)
        _ = try sources.write("secondary/config.bak", bytes: 210_000, seed: 4)
        let failback = try await standby.run(
            ["failback", site, "--state", state, "--lead", "alice", "--yes", "--reason", "east rebuilt"],
            environment: sources.environment, in: lab)
        #expect(failback.status == 0, "\(failback)")
        for step in ["reverse/web-db", "reverse/ssh-db", "final/web-db", "final/ssh-db"] {
            #expect(failback.stdout.contains("\(step): succeeded"), "\(step)\n\(failback)")
        }
        #expect(!failback.stdout.contains(Self.password) && !failback.stderr.contains(Self.password))

        // Credentials went only where they were asked for: each transfer's first request to
        // the protected location went without them (the 401), and none to the public one.
        let privateRequests = sources.requests(to: "/private/")
        #expect(privateRequests.contains { $0.contains("\" 401 ") && $0.contains(" - - [") }, "\(privateRequests)")
        #expect(privateRequests.contains { $0.contains(" \(Self.user) [") && $0.contains("\" 200 ") })
    }

    @Test("over plain http the password is sent only with allow_insecure_auth, and only after a 401")
    func plainHTTPNeedsConsent() async throws {
        let lab = try LabDirectory(prefix: "creds-http")
        defer { lab.remove() }
        let sources = try Sources(lab)
        defer { sources.stop() }
        _ = try sources.write("www/private/rtc.bak", bytes: 100_000, seed: 5)
        _ = try sources.write("www/public/open.bak", bytes: 100_000, seed: 6)
        let state = lab.file("state")
        let standby = try StandbyRunner.locate()
        let site = try Self.site(sources)

        // A server that never asks gets no credentials, though they are set.
        let open = sources.nginx.url("public/open.bak").absoluteString
        let openSite = try String(contentsOfFile: site, encoding: .utf8).replacingOccurrences(
            of: sources.nginx.url("private/rtc.bak").absoluteString, with: open)
        try lab.write("open/site.yaml", openSite)
        let fetched = try await standby.run(
            ["replicate", lab.file("open/site.yaml"), "--state", state, "--set", "web-db"],
            environment: sources.environment, in: lab)
        #expect(fetched.status == 0, "\(fetched)")
        let openRequests = sources.requests(to: "/public/")
        #expect(!openRequests.isEmpty)
        #expect(openRequests.allSatisfy { $0.contains(" - - [") }, "no user on any request: \(openRequests)")

        // Without allow_insecure_auth, a plain-http server that asks gets nothing, and the
        // operator is told why.
        let strict = try String(contentsOfFile: site, encoding: .utf8).replacingOccurrences(
            of: "allow_insecure_auth: true", with: "allow_insecure_auth: false")
        try lab.write("strict/site.yaml", strict)
        let refused = try await standby.run(
            ["replicate", lab.file("strict/site.yaml"), "--state", state, "--set", "web-db"],
            environment: sources.environment, in: lab)
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("web-db"), "\(refused)")
        #expect(refused.stderr.contains("over plain http") && refused.stderr.contains("allow_insecure_auth"))
        #expect(!refused.stderr.contains(Self.password))
        #expect(
            sources.requests(to: "/private/").allSatisfy { !$0.contains(" \(Self.user) [") },
            "the password never crossed in clear")

        // check warns about the set that allows it.
        let check = try await standby.run(["check", site, "--state", state], in: lab)
        #expect(check.stdout.contains("insecure-auth") && check.stdout.contains("web-db"), "\(check)")
    }
}
