import Foundation
import StandbyLab
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension Tag {
    @Tag static var server: Self
    @Tag static var failover: Self
}

/// The built `standby` executable, run as a user runs it: stdin is /dev/null (no terminal),
/// stdout and stderr go to files (no pipe to fill), and the exit code or signal is reported.
struct StandbyRunner {
    let path: String

    struct Result: CustomStringConvertible {
        var status: Int32
        /// The signal that ended the process, if one did (kill -9 shows up here).
        var signal: Int32?
        var stdout: String
        var stderr: String

        var description: String {
            "exit \(status) signal \(signal.map(String.init) ?? "-")\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)"
        }
    }

    /// `standby` next to the test bundle (`.build/<config>/`), else `.build/debug/standby` above
    /// the working directory. `swift build` builds it before `swift test` runs.
    static func locate() throws -> StandbyRunner {
        var candidates: [String] = []
        if let argument = CommandLine.arguments.first {
            var directory = (argument as NSString).deletingLastPathComponent
            for _ in 0..<4 {
                candidates.append((directory as NSString).appendingPathComponent("standby"))
                directory = (directory as NSString).deletingLastPathComponent
            }
        }
        candidates.append(FileManager.default.currentDirectoryPath + "/.build/debug/standby")
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue {
                return StandbyRunner(path: candidate)
            }
        }
        throw LabError(
            .missingProgram, "the standby executable is not built (looked at \(candidates.joined(separator: ", ")))")
    }

    /// Starts `standby arguments...`; returns its pid and a task that waits for it.
    func start(_ arguments: [String], environment extra: [String: String] = [:], in lab: LabDirectory) throws -> Running
    {
        let id = UUID().uuidString.prefix(8)
        let out = lab.file("out-\(id).txt")
        let err = lab.file("err-\(id).txt")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "STANDBY_STATE")
        environment.removeValue(forKey: "STANDBY_KILL_AT")
        for (key, value) in extra { environment[key] = value }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let env = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { env.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, nil, argv, env)
        guard result == 0 else {
            throw LabError(.spawnFailed, "could not start \(path): \(String(cString: strerror(result)))")
        }
        return Running(pid: pid, stdoutPath: out, stderrPath: err)
    }

    /// Runs `standby arguments...` to its end.
    func run(_ arguments: [String], environment: [String: String] = [:], in lab: LabDirectory) async throws -> Result {
        try await start(arguments, environment: environment, in: lab).wait()
    }

    struct Running: Sendable {
        let pid: pid_t
        let stdoutPath: String
        let stderrPath: String

        /// Waits on a dispatch thread (waitpid blocks) and collects the output.
        func wait() async -> Result {
            let pid = self.pid
            let status: Int32 = await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    var status: Int32 = 0
                    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                    continuation.resume(returning: status)
                }
            }
            let signaled = (status & 0x7f) != 0 && (status & 0x7f) != 0x7f
            let read = { (path: String) in (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
            return Result(
                status: signaled ? -1 : (status >> 8) & 0xff, signal: signaled ? status & 0x7f : nil,
                stdout: read(stdoutPath), stderr: read(stderrPath))
        }
    }
}

/// A deployment written into a test's directory: the steps append lines to `effects`, so a test
/// counts side effects.
struct EngineSite {
    let lab: LabDirectory
    let directory: String
    let state: String
    let effects: String

    init(lab: LabDirectory, services: String, offPeak: String = "22:00-05:00") throws {
        self.lab = lab
        directory = try lab.directory("site")
        state = lab.file("state")
        effects = lab.file("effects")
        let yaml = """
            deployment: enginetest
            domain: example.test
            sites:
              primary: { name: red, timezone: UTC, pool: pool01.example.test }
              secondary:
                name: dub
                timezone: UTC
                pool: pool02.example.test
                off_peak: ["\(offPeak)"]
                standby_servers:
                  - { host: fe.example.test, roles: [front-end] }
            services:
            \(services.replacingOccurrences(of: "EFFECTS", with: effects).replacingOccurrences(of: "LAB", with: lab.path))
            health:
              probes: []
            policy:
              incident_leads: [alice, bob]
            """
        try lab.write("site/site.yaml", yaml)
    }

    /// The lines steps appended, in order.
    var lines: [String] {
        ((try? String(contentsOfFile: effects, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func count(_ line: String) -> Int { lines.filter { $0 == line }.count }
}
