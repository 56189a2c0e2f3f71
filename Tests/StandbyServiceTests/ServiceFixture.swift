import Foundation
import Logging
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension Tag {
    @Tag static var server: Self
}

let testLogger = Logger(label: "standby.service.tests") { _ in SwiftLogNoOpLogHandler() }

/// A deployment whose backup sets live on a real nginx on loopback, a state directory, and the
/// built `standby` binary to run against them.
struct ServiceFixture {
    let lab: LabDirectory
    let nginx: NginxServer
    let binary: StandbyBinary
    var state: String { lab.file("state") }

    init() throws {
        lab = try LabDirectory(prefix: "standby-service")
        binary = try StandbyBinary()
        nginx = try NginxServer.start(in: lab)
    }

    func stop() {
        nginx.stop()
        lab.remove()
    }

    /// Writes a file of `size` pseudo-random bytes under nginx's root.
    func serve(_ name: String, size: Int, seed: UInt64) throws -> String {
        let path = (nginx.root as NSString).appendingPathComponent(name)
        var generator = seed &+ 0x9E37_79B9_7F4A_7C15
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for i in words.indices {
                generator ^= generator << 13
                generator ^= generator >> 7
                generator ^= generator << 17
                words[i] = generator
            }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A site.yaml with the given backup sets (name: file under nginx) and extra top-level YAML.
    /// Both sites are in UTC; `offPeak` is both windows.
    /// A file named by a full URL (`file://...`) is used as it is; `schedule` is every set's.
    func writeSite(
        sets: [String: String], offPeak: String, extra: String = "", probes: String? = nil, peakRate: String = "1GB/s",
        schedule: String = "{ every: 4h }"
    ) throws -> String {
        var site = SiteYAML(deployment: "svc", domain: "svc.test")
        site.primary = .init(name: "east", pool: "pool01.svc.test", offPeak: [offPeak])
        site.secondary = .init(
            name: "west", pool: "pool02-dr.svc.test", offPeak: [offPeak], store: lab.file("store"),
            standbyServers: ["{ host: 127.0.2.10, roles: [front-end] }"])
        site.replication = ["peak_rate: \(peakRate)"]
        site.backupSets = sets.sorted(by: { $0.key < $1.key }).map { name, file in
            let source = file.contains("://") ? file : nginx.url(file).absoluteString
            return "{ name: \(name), kind: database, source: \"\(source)\", schedule: \(schedule), rpo: 1h }"
        }
        site.services = [
            SiteYAML.service(
                "core", roles: [], steps: ["{ name: start, exec: [/bin/true] }"],
                extra: ["backup_sets: [\(sets.keys.sorted().joined(separator: ", "))]"])
        ]
        site.health =
            ["interval: 200ms", "fall: 1", "rise: 1", "timeout: 1s", "probes:"]
            + (probes.map { $0.split(separator: "\n").map(String.init) } ?? [
                "  - { name: web, tcp: \"127.0.0.1:\(nginx.port)\", site: primary }"
            ])
        site.policy = [
            "drill_every: 3650d", "review_every: 3650d", "last_review: 2026-10-01", "last_drill: 2026-10-01",
        ]
        site.extra = extra
        let yaml = site.text
        let path = lab.file("site.yaml")
        try Data(yaml.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Starts `standby run` on a free port; returns once it said which port it serves.
    func start(_ site: String, run: Int = 1) async throws -> (command: RunningCommand, port: Int, stderr: String) {
        let out = lab.file("run\(run).out")
        let err = lab.file("run\(run).err")
        let command = try binary.start(
            ["run", site, "--state", state, "--listen", "127.0.0.1:0", "--tick-milliseconds", "100"],
            stdout: out, stderr: err)
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOfFile: out, encoding: .utf8),
                let range = text.range(of: "(port "),
                let port = Int(text[range.upperBound...].prefix(while: \.isNumber))
            {
                return (command, port, err)
            }
            if let status = command.exited() {
                throw LabError(
                    .notReady,
                    "standby run exited \(status) before serving: \((try? String(contentsOfFile: err, encoding: .utf8)) ?? "")"
                )
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        command.kill9()
        throw LabError(.notReady, "standby run did not start serving within 60 s (a loaded machine)")
    }
}

extension RunningCommand {
    /// The exit status if the process ended (reaping it), nil while it runs; -1 when it was
    /// already reaped (a second `stop()` in a `defer`).
    func exited() -> Int32? {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == -1 && errno == ECHILD { return -1 }
        guard result == pid else { return nil }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// For a `defer`: kills the process (and its group) unless it already ended, and reaps it.
    func end() {
        guard exited() == nil else { return }
        kill9()
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    /// Sends `signal` and waits (with a deadline) for the exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM, within: Duration = .seconds(30)) async -> Int32? {
        if let status = exited() { return status }
        kill(pid, signal)
        let deadline = ContinuousClock.now + within
        while ContinuousClock.now < deadline {
            if let status = exited() { return status }
            try? await Task.sleep(for: .milliseconds(20))
        }
        kill9()
        _ = exited()
        return nil
    }
}

/// Runs python3 with a script; returns stdout (throws with stderr on a non-zero exit).
func python(_ script: String, _ arguments: [String] = []) throws -> String {
    let run = try PythonRun(script, arguments)
    defer { run.lab.remove() }
    try run.process.run()
    run.process.waitUntilExit()
    return try run.output(status: run.process.terminationStatus)
}

/// A `python3 -c SCRIPT` process with its output and errors going to files of a lab directory.
struct PythonRun {
    let lab: LabDirectory
    let process = Process()
    let out: String
    let err: String

    init(_ script: String, _ arguments: [String]) throws {
        lab = try LabDirectory(prefix: "standby-python")
        out = lab.file("out")
        err = lab.file("err")
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle(forWritingAtPath: err)
    }

    /// Its standard output, or an error with its standard error when it did not exit 0.
    func output(status: Int32) throws -> String {
        guard status == 0 else {
            throw LabError(
                .setupFailed, "python3 failed: \((try? String(contentsOfFile: err, encoding: .utf8)) ?? "")")
        }
        return (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
    }
}

/// GET through python's urllib: (status, body).
func httpGet(_ url: String, token: String? = nil) throws -> (status: Int, body: String) {
    let script = """
        import sys, urllib.request, urllib.error, json
        req = urllib.request.Request(sys.argv[1])
        if len(sys.argv) > 2: req.add_header("Authorization", "Bearer " + sys.argv[2])
        try:
            with urllib.request.urlopen(req, timeout=10) as r: print(json.dumps([r.status, r.read().decode()]))
        except urllib.error.HTTPError as e: print(json.dumps([e.code, e.read().decode()]))
        """
    let text = try python(script, [url] + (token.map { [$0] } ?? []))
    let array = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [Any]
    return ((array?[0] as? Int) ?? 0, (array?[1] as? String) ?? "")
}

/// Polls `/status.json` until `condition` holds (deadline), returning the decoded object.
func waitForStatus(port: Int, within: Duration = .seconds(60), _ condition: ([String: Any]) -> Bool) async throws
    -> [String: Any]
{
    let deadline = ContinuousClock.now + within
    var last: [String: Any] = [:]
    while ContinuousClock.now < deadline {
        if let (status, body) = try? httpGet("http://127.0.0.1:\(port)/status.json"), status == 200,
            let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        {
            last = object
            if condition(object) { return object }
        }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw LabError(.notReady, "status never reached the expected state; last: \(last)")
}

func sets(_ status: [String: Any]) -> [[String: Any]] { status["sets"] as? [[String: Any]] ?? [] }

/// An answer as it came over the wire: the status, the headers (names lowercased) and every byte
/// after them, so a HEAD answered with a body would show it.
struct WireResponse: Sendable {
    var status: Int
    var headers: [String: String]
    var bodyLength: Int
    var body: String
}

/// Sends each request on its own connection (HTTP/1.1, `Connection: close`) over a raw socket and
/// reads to the close. One python3 for them all; awaited without blocking a thread of the pool,
/// which also runs the endpoint when a test serves it in-process.
func exchange(port: Int, _ requests: [(method: String, path: String, authorization: String?)]) async throws
    -> [WireResponse]
{
    let script = """
        import sys, socket, json
        out = []
        for method, path, auth in json.loads(sys.argv[2]):
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
            req = method + " " + path + " HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n"
            if auth is not None: req += "Authorization: " + auth + "\\r\\n"
            s.sendall((req + "\\r\\n").encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk: break
                data += chunk
            s.close()
            head, _, body = data.partition(b"\\r\\n\\r\\n")
            lines = head.decode("latin-1").split("\\r\\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            out.append({"status": int(lines[0].split()[1]), "headers": headers, "bodyLength": len(body),
                "body": body.decode("utf-8", "replace")})
        print(json.dumps(out))
        """
    let list: [[Any]] = requests.map { [$0.method, $0.path, $0.authorization.map { $0 as Any } ?? NSNull()] }
    let argument = String(decoding: try JSONSerialization.data(withJSONObject: list), as: UTF8.self)
    let text = try await pythonAsync(script, ["\(port)", argument])
    let decoded = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]] ?? []
    return decoded.map {
        WireResponse(
            status: $0["status"] as? Int ?? 0, headers: $0["headers"] as? [String: String] ?? [:],
            bodyLength: $0["bodyLength"] as? Int ?? -1, body: $0["body"] as? String ?? "")
    }
}

/// `python(_:_:)`, awaited through the process's termination handler instead of blocking.
func pythonAsync(_ script: String, _ arguments: [String] = []) async throws -> String {
    let run = try PythonRun(script, arguments)
    defer { run.lab.remove() }
    let process = run.process
    let status = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32, any Error>) in
        process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
        do {
            try process.run()
        } catch {
            process.terminationHandler = nil
            continuation.resume(throwing: error)
        }
    }
    return try run.output(status: status)
}
