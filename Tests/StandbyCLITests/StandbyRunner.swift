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

/// The built `standby` executable, run as a user runs it: StandbyLab's `StandbyBinary` (stdin
/// /dev/null, output to files, exit code or signal), with an async wait and a clean environment.
struct StandbyRunner {
    let binary: StandbyBinary
    var path: String { binary.path }

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

    init(binary: StandbyBinary) { self.binary = binary }

    /// Another program run the same way (chromium, python3).
    init(path: String) { self.binary = StandbyBinary(path: path) }

    static func locate() throws -> StandbyRunner { StandbyRunner(binary: try StandbyBinary()) }

    /// Starts `standby arguments...`; returns its pid and a way to wait for it.
    func start(_ arguments: [String], environment extra: [String: String] = [:], in lab: LabDirectory) throws -> Running
    {
        let id = UUID().uuidString.prefix(8)
        let out = lab.file("out-\(id).txt")
        let err = lab.file("err-\(id).txt")
        let command = try binary.start(
            arguments, environment: extra, removing: ["STANDBY_STATE", "STANDBY_KILL_AT"], stdout: out, stderr: err)
        return Running(command: command, stdoutPath: out, stderrPath: err)
    }

    /// Runs `standby arguments...` to its end.
    func run(_ arguments: [String], environment: [String: String] = [:], in lab: LabDirectory) async throws -> Result {
        try await start(arguments, environment: environment, in: lab).wait()
    }

    struct Running: Sendable {
        let command: RunningCommand
        let stdoutPath: String
        let stderrPath: String
        var pid: pid_t { command.pid }

        func wait() async -> Result {
            let (status, signal) = await command.waitAsync()
            let read = { (path: String) in (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
            return Result(
                status: signal == nil ? status : -1, signal: signal, stdout: read(stdoutPath), stderr: read(stderrPath))
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

    init(lab: LabDirectory, services: String, backupSets: [String] = [], offPeak: String = "22:00-05:00") throws {
        self.lab = lab
        directory = try lab.directory("site")
        state = lab.file("state")
        effects = lab.file("effects")
        var site = SiteYAML(deployment: "enginetest", domain: "example.test")
        site.secondary.pool = "pool02.example.test"
        site.secondary.offPeak = [offPeak]
        site.services = SiteYAML.services(
            yaml: services.replacingOccurrences(of: "EFFECTS", with: effects).replacingOccurrences(
                of: "LAB", with: lab.path))
        site.backupSets = backupSets
        site.incidentLeads = ["alice", "bob"]
        try site.write(in: lab)
    }

    /// The lines steps appended, in order.
    var lines: [String] {
        ((try? String(contentsOfFile: effects, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func count(_ line: String) -> Int { lines.filter { $0 == line }.count }
}
