import Foundation
import StandbyCore
import StandbyLab
import StandbyReplication
import StandbyService
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `standby run` against real servers: the endpoint as a scraper and a browser see it, the token,
/// one instance per state directory, and a SIGTERM in the middle of a replication.
@Suite(.tags(.server), .serialized) struct ServiceEndpointTests {
    /// A window that is closed now: six hours from now, one hour long (UTC).
    static func closedWindow() -> String {
        let hour =
            (Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date()).hour!
                + 6) % 24
        return String(format: "%02d:00-%02d:00", hour, (hour + 1) % 24)
    }

    @Test func metricsParseWithThePrometheusParser() async throws {
        let fixture = try ServiceFixture()
        defer { fixture.stop() }
        _ = try fixture.serve("rtc.bak", size: 3 << 20, seed: 1)
        _ = try fixture.serve("settings.xml", size: 200_000, seed: 2)
        let closed = try Ports.free()
        let site = try fixture.writeSite(
            sets: ["rtc-db": "rtc.bak", "settings": "settings.xml"], offPeak: Self.closedWindow(),
            probes: """
                    - { name: web, tcp: "127.0.0.1:\(fixture.nginx.port)", site: primary }
                    - { name: gone, tcp: "127.0.0.1:\(closed)", site: secondary }
                """)
        let (command, port, stderr) = try await fixture.start(site)
        defer { command.end() }
        _ = try await waitForStatus(port: port) { status in
            let stored = sets(status).allSatisfy { ($0["versions"] as? Int ?? 0) >= 1 }
            let probes = (status["probes"] as? [[String: Any]] ?? []).allSatisfy {
                ($0["state"] as? String) != "unknown"
            }
            return stored && probes
        }

        // The reference parser reads the exposition; it fails on anything malformed.
        let script = """
            import sys, json, urllib.request
            from prometheus_client.parser import text_string_to_metric_families
            text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
            out = {}
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    out.setdefault(s.name, []).append([s.labels, s.value])
            print(json.dumps(out))
            """
        let json = try python(script, ["http://127.0.0.1:\(port)/metrics"])
        let families = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: [[Any]]])
        func value(_ name: String, _ label: String, _ labelValue: String) -> Double? {
            families[name]?.first { (($0[0] as? [String: String])?[label]) == labelValue }.flatMap { $0[1] as? Double }
        }
        for set in ["rtc-db", "settings"] {
            let age = try #require(value("standby_set_rpo_age_seconds", "set", set), "no RPO age for \(set)")
            #expect(age >= 0 && age < 600)
            #expect(value("standby_set_rpo_target_seconds", "set", set) == 3600)
            let verified = try #require(value("standby_set_last_verified_timestamp_seconds", "set", set))
            #expect(abs(verified - Date().timeIntervalSince1970) < 600)
        }
        #expect((value("standby_set_stored_bytes", "set", "rtc-db") ?? 0) >= Double(3 << 20))
        #expect(value("standby_probe_up", "probe", "web") == 1)
        #expect(value("standby_probe_up", "probe", "gone") == 0)
        #expect((value("standby_probe_latency_seconds", "probe", "web") ?? -1) >= 0)
        #expect(value("standby_site_up", "site", "primary") == 1)
        #expect(value("standby_site_up", "site", "secondary") == 0)
        #expect(value("standby_failover_active", "run", "") == 0)
        #expect(value("standby_job_failures", "job", "replicate:rtc-db") == 0)

        #expect(try httpGet("http://127.0.0.1:\(port)/healthz").status == 200)
        #expect(await command.stop() == 0)
        let log = (try? String(contentsOfFile: stderr, encoding: .utf8)) ?? ""
        #expect(log.contains("Service stopped"))
    }

    @Test func statusPageRendersInHeadlessChromium() async throws {
        let fixture = try ServiceFixture()
        defer { fixture.stop() }
        _ = try fixture.serve("rtc.bak", size: 1 << 20, seed: 3)
        let site = try fixture.writeSite(sets: ["rtc-db": "rtc.bak"], offPeak: Self.closedWindow())
        let (command, port, _) = try await fixture.start(site)
        defer { command.end() }
        _ = try await waitForStatus(port: port) { sets($0).first?["versions"] as? Int == 1 }
        let page = try httpGet("http://127.0.0.1:\(port)/")
        #expect(page.status == 200)
        #expect(page.body.contains("rtc-db") && page.body.contains("<svg"))
        #expect(!page.body.contains("http://") || !page.body.contains("<script"), "self-contained: no scripts")

        let chromium = try Programs.locate("chromium", package: "chromium")
        let screenshot = fixture.lab.file("status.png")
        let browser = Process()
        browser.executableURL = URL(fileURLWithPath: chromium)
        browser.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--screenshot=\(screenshot)",
            "--window-size=1200,900", "--user-data-dir=\(fixture.lab.file("chromium"))",
            "http://127.0.0.1:\(port)/",
        ]
        browser.standardOutput = FileHandle.nullDevice
        browser.standardError = FileHandle.nullDevice
        try browser.run()
        browser.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: screenshot))

        // Decode the PNG (zlib + row filters) and count colours: a blank or error page is one or two
        // colours; ours has the green RPO bar (#2e7d32) and the dark header rule (#263238).
        let script = """
            import sys, zlib, struct, json
            data = open(sys.argv[1], 'rb').read()
            assert data[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
            pos, idat, w, h = 8, b'', 0, 0
            while pos < len(data):
                n, kind = struct.unpack('>I4s', data[pos:pos+8]); body = data[pos+8:pos+8+n]; pos += 12 + n
                if kind == b'IHDR': w, h, depth, ctype = struct.unpack('>IIBB', body[:10])
                elif kind == b'IDAT': idat += body
            bpp = {2: 3, 6: 4}[ctype]
            raw = zlib.decompress(idat); stride = w * bpp; rows = []; prev = bytearray(stride); i = 0
            for y in range(h):
                f = raw[i]; line = bytearray(raw[i+1:i+1+stride]); i += 1 + stride
                for x in range(stride):
                    a = line[x-bpp] if x >= bpp else 0; b = prev[x]; c = prev[x-bpp] if x >= bpp else 0
                    if f == 1: line[x] = (line[x] + a) & 255
                    elif f == 2: line[x] = (line[x] + b) & 255
                    elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
                    elif f == 4:
                        p = a + b - c; pa, pb, pc = abs(p-a), abs(p-b), abs(p-c)
                        line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
                rows.append(line); prev = line
            colours = {}
            for line in rows:
                for x in range(0, stride, bpp):
                    px = bytes(line[x:x+3]); colours[px] = colours.get(px, 0) + 1
            print(json.dumps({"w": w, "h": h, "distinct": len(colours),
                "green": colours.get(bytes([0x2e, 0x7d, 0x32]), 0), "dark": colours.get(bytes([0x26, 0x32, 0x38]), 0)}))
            """
        let figures = try #require(
            try JSONSerialization.jsonObject(with: Data(try python(script, [screenshot]).utf8)) as? [String: Int])
        #expect(figures["w"] == 1200 && figures["h"] == 900)
        #expect((figures["distinct"] ?? 0) > 20, "the screenshot is nearly one colour: \(figures)")
        #expect((figures["green"] ?? 0) > 2000, "no green RPO bar in the screenshot: \(figures)")
        #expect((figures["dark"] ?? 0) > 1000, "no header rule in the screenshot: \(figures)")
    }

    @Test func tokenGuardsEverythingButHealthz() async throws {
        let fixture = try ServiceFixture()
        defer { fixture.stop() }
        _ = try fixture.serve("rtc.bak", size: 100_000, seed: 4)
        try fixture.lab.write("token", "s3cret-token\n", mode: 0o644)
        let site = try fixture.writeSite(
            sets: ["rtc-db": "rtc.bak"], offPeak: Self.closedWindow(),
            extra: "service: { token_file: \(fixture.lab.file("token")) }")
        // Readable by others: refused, like the TSIG key.
        let refused = try fixture.binary.run(["run", site, "--state", fixture.state, "--listen", "127.0.0.1:0"])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("readable by group or others"))

        chmod(fixture.lab.file("token"), 0o600)
        let (command, port, _) = try await fixture.start(site)
        defer { command.end() }
        #expect(try httpGet("http://127.0.0.1:\(port)/metrics").status == 401)
        #expect(try httpGet("http://127.0.0.1:\(port)/", token: "wrong").status == 401)
        #expect(try httpGet("http://127.0.0.1:\(port)/metrics", token: "s3cret-token").status == 200)
        #expect(try httpGet("http://127.0.0.1:\(port)/healthz").status == 200)
        // The binary wires the same endpoint: the scheme in any case, HEAD where GET answers.
        let answers = try await exchange(
            port: port,
            [
                ("GET", "/metrics", "bearer s3cret-token"), ("GET", "/metrics", "BEARER s3cret-token"),
                ("GET", "/metrics", "bearer wrong"), ("HEAD", "/healthz", nil), ("HEAD", "/", "bearer s3cret-token"),
                ("HEAD", "/nothing-here", "Bearer s3cret-token"),
            ])
        #expect(answers.map(\.status) == [200, 200, 401, 200, 200, 404])
        #expect(answers[3].headers["content-length"] == "3" && answers[3].bodyLength == 0)

        // One instance per state directory.
        let second = try fixture.binary.run(["run", site, "--state", fixture.state, "--listen", "127.0.0.1:0"])
        #expect(second.status == 3)
        #expect(second.stderr.contains("another standby run serves this state directory"))
    }

    @Test(
        "SIGTERM (graceful) or SIGKILL during a replication; the restart finishes it, nothing fetched twice",
        arguments: [SIGTERM, SIGKILL])
    func signalDuringReplicationThenRestartFinishesWithNothingFetchedTwice(signal: Int32) async throws {
        let fixture = try ServiceFixture()
        defer { fixture.stop() }
        let size = 48 << 20
        let source = try fixture.serve("big.bak", size: size, seed: 5)
        _ = try await Publisher.publish(paths: [source], logger: testLogger)
        // Outside the primary's off-peak window the transfer is capped: 48 MiB at 8 MB/s is ~6 s.
        let site = try fixture.writeSite(sets: ["rtc-db": "big.bak"], offPeak: Self.closedWindow(), peakRate: "8MB/s")
        let (first, _, firstLog) = try await fixture.start(site, run: 1)

        // SIGTERM once a third is stored.
        let packs = fixture.lab.file("store/packs")
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline, storedBytes(packs) < size / 3 {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(storedBytes(packs) >= size / 3)
        #expect(storedBytes(packs) < size, "the replication finished before the SIGTERM; the test proves nothing")
        let started = ContinuousClock.now
        if signal == SIGTERM {
            #expect(await first.stop(signal: SIGTERM) == 0)
            #expect(started.duration(to: .now) < .seconds(10), "the shutdown waited for the whole replication")
            let log1 = (try? String(contentsOfFile: firstLog, encoding: .utf8)) ?? ""
            #expect(log1.contains("Job stopped by the shutdown"))
            #expect(log1.contains("Service stopped"))
        } else {
            #expect(await first.stop(signal: SIGKILL) == 128 + SIGKILL)
        }

        // The restart continues the interrupted job first and finishes it.
        let (second, port, secondLog) = try await fixture.start(site, run: 2)
        let status = try await waitForStatus(port: port, within: .seconds(90)) {
            sets($0).first?["versions"] as? Int == 1
        }
        #expect((sets(status).first?["storedBytes"] as? Int ?? 0) > 0)
        #expect(await second.stop() == 0)
        let log2 = (try? String(contentsOfFile: secondLog, encoding: .utf8)) ?? ""
        #expect(log2.contains("continues the run interrupted"))
        #expect(log2.contains("Job done"))

        // nginx's log: the bytes it sent of big.bak over both runs, whole GET and ranges alike.
        let access = try String(contentsOfFile: fixture.nginx.accessLogPath, encoding: .utf8)
        var sent = 0
        for line in access.split(separator: "\n") where line.contains("GET /big.bak ") {
            let afterRequest = line.components(separatedBy: "\" ").dropFirst().first ?? ""
            let fields = afterRequest.split(separator: " ")
            if fields.count >= 2, let bytes = Int(fields[1]) { sent += bytes }
        }
        #expect(sent >= size)
        #expect(sent < size + size / 5, "nginx sent \(sent) bytes of a \(size)-byte file")
    }

    @Test func firstStartWithTheFullAndTheSnapshotDueRunsOneJobForTheSet() async throws {
        let fixture = try ServiceFixture()
        defer { fixture.stop() }
        try FileManager.default.createDirectory(atPath: fixture.lab.file("source"), withIntermediateDirectories: true)
        let source = fixture.lab.file("source/rtc.bak")
        try Data(repeating: 7, count: 2 << 20).write(to: URL(fileURLWithPath: source))
        // The window is open now (so the daily full of 00:00 is due) and no job ever ran (so the
        // snapshot is due too).
        let hour = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date()).hour!
        let open = String(format: "%02d:00-%02d:00", (hour + 23) % 24, (hour + 2) % 24)
        let site = try fixture.writeSite(
            sets: ["rtc-db": "file://\(source)"], offPeak: open, schedule: "{ every: 4h, full_daily_at: \"00:00\" }")
        let (command, port, stderr) = try await fixture.start(site)
        defer { command.end() }
        func jobs(_ status: [String: Any]) -> [String: [String: Any]] {
            var jobs: [String: [String: Any]] = [:]
            for job in status["jobs"] as? [[String: Any]] ?? [] { jobs[job["key"] as? String ?? ""] = job }
            return jobs
        }
        let status = try await waitForStatus(port: port) { jobs($0)["full:rtc-db"]?["lastSucceeded"] != nil }
        #expect(sets(status).first?["versions"] as? Int == 1)
        // The lane takes whatever else is due at once after a job: a snapshot would start within a
        // tick (100 ms). Watch for two seconds that none does.
        let watchUntil = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < watchUntil {
            let (code, body) = try httpGet("http://127.0.0.1:\(port)/status.json")
            let now = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
            #expect(code == 200)
            #expect(jobs(now)["replicate:rtc-db"] == nil, "a snapshot ran right after the full: \(jobs(now))")
            #expect(sets(now).first?["versions"] as? Int == 1)
            if jobs(now)["replicate:rtc-db"] != nil { break }
        }
        #expect(await command.stop() == 0)
        let log = (try? String(contentsOfFile: stderr, encoding: .utf8)) ?? ""
        let started = log.split(separator: "\n").filter { $0.contains("Job started") && $0.contains("rtc-db") }
        #expect(started.count == 1, "\(started)")
        #expect(started.first?.contains("full:rtc-db") == true)
    }

    // MARK: The endpoint in-process, on a fixed snapshot (so GET and HEAD render the same bytes)

    /// The routes that answer GET, as `ServiceEndpoint.router` declares them.
    static let routes = ["/healthz", "/metrics", "/status.json", "/"]
    static let token = "s3cret-token"

    static func fixedSnapshot() -> ServiceSnapshot {
        let at = Date(timeIntervalSince1970: 1_795_000_000)
        var snapshot = ServiceSnapshot(
            deployment: "svc", primarySite: "east", secondarySite: "west", generatedAt: at, startedAt: at)
        snapshot.sets = [
            .init(
                name: "rtc-db", kind: "database", rpoTargetSeconds: 3600, capturedAt: at.addingTimeInterval(-600),
                lastVerifiedAt: at.addingTimeInterval(-300), storedBytes: 3 << 20, versions: 2)
        ]
        snapshot.jobs = [
            .init(
                record: JobRecord(
                    key: "full:rtc-db", lastStarted: at, lastFinished: at, lastSucceeded: at, detail: "ok"),
                running: false)
        ]
        return snapshot
    }

    /// Serves `ServiceEndpoint`'s application on a free loopback port while `body` runs.
    func withEndpoint(token: BearerToken?, _ body: (Int) async throws -> Void) async throws {
        let bound = Mutex<Int?>(nil)
        let snapshot = Self.fixedSnapshot()
        let app = try ServiceEndpoint.application(
            listen: "127.0.0.1:0", token: token, snapshot: { snapshot }, logger: testLogger,
            onRunning: { port in bound.withLock { $0 = port } })
        let server = Task { try await app.run() }
        defer { server.cancel() }
        let deadline = ContinuousClock.now + .seconds(20)
        while bound.withLock({ $0 }) == nil, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let port = try #require(bound.withLock { $0 }, "the endpoint did not start listening within 20 s")
        try await body(port)
        server.cancel()
        _ = await server.result
    }

    @Test func headAnswersEveryGetRouteWithGetsStatusAndHeadersAndNoBody() async throws {
        try await withEndpoint(token: BearerToken(value: Self.token)) { port in
            let bearer = "Bearer \(Self.token)"
            var requests: [(method: String, path: String, authorization: String?)] = []
            for path in Self.routes { requests += [("GET", path, bearer), ("HEAD", path, bearer)] }
            requests += [
                ("GET", "/no-such-page", bearer), ("HEAD", "/no-such-page", bearer),
                ("GET", "/metrics", nil), ("HEAD", "/metrics", nil), ("HEAD", "/healthz", nil),
            ]
            let answers = try await exchange(port: port, requests)
            try #require(answers.count == requests.count)
            // The Date header may tick between the two requests; everything else is the same.
            func headers(_ answer: WireResponse) -> [String: String] { answer.headers.filter { $0.key != "date" } }

            for (index, path) in Self.routes.enumerated() {
                let get = answers[2 * index]
                let head = answers[2 * index + 1]
                #expect(get.status == 200, "GET \(path)")
                #expect(get.bodyLength > 0, "GET \(path)")
                #expect(get.headers["content-length"] == "\(get.bodyLength)", "GET \(path)")
                #expect(head.status == get.status, "HEAD \(path)")
                #expect(headers(head) == headers(get), "HEAD \(path)")
                #expect(head.bodyLength == 0, "HEAD \(path) sent a body: \(head.body.prefix(80))")
            }
            let offset = 2 * Self.routes.count
            // An unknown path is 404 to both.
            #expect(answers[offset].status == 404)
            #expect(answers[offset + 1].status == 404)
            #expect(answers[offset + 1].bodyLength == 0)
            // Without the token HEAD is refused like GET, with GET's headers and no body;
            // /healthz needs no token for either.
            let (getRefused, headRefused) = (answers[offset + 2], answers[offset + 3])
            #expect(getRefused.status == 401 && headRefused.status == 401)
            #expect(headers(headRefused) == headers(getRefused))
            #expect(headRefused.headers["www-authenticate"] == "Bearer realm=\"standby\"")
            #expect(headRefused.bodyLength == 0)
            #expect(answers[offset + 4].status == 200 && answers[offset + 4].bodyLength == 0)
        }
    }

    @Test func bearerSchemeIsCaseInsensitiveAndTheTokenIsNot() async throws {
        try await withEndpoint(token: BearerToken(value: Self.token)) { port in
            let accepted =
                ["Bearer", "bearer", "BEARER", "bEaReR"].map { "\($0) \(Self.token)" } + [
                    "Bearer   \(Self.token)"
                ]
            let refused = [
                "Bearer wrong-token", "bearer wrong-token", "BEARER S3CRET-TOKEN", "Bearer s3cret-tokenx",
                "Basic \(Self.token)", Self.token, "Bearer", "Bearer ", "Bearers \(Self.token)",
            ]
            let answers = try await exchange(
                port: port, (accepted + refused).map { (method: "GET", path: "/status.json", authorization: $0) })
            for (header, answer) in zip(accepted + refused, answers) {
                let expected = accepted.contains(header) ? 200 : 401
                #expect(answer.status == expected, "Authorization: \(header)")
            }
        }
    }

    func storedBytes(_ directory: String) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.reduce(0) { total, name in
            let attributes = try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)
            return total + ((attributes?[.size] as? NSNumber)?.intValue ?? 0)
        }
    }
}
