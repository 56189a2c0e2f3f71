import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A real etcd cluster on loopback (Debian's `etcd-server`): three members by default, each on
/// free client and peer ports, with its data directory in the lab directory. Members are stopped
/// and started again by pid, so a test can take quorum away and give it back.
public final class EtcdCluster: Sendable {
    public struct Member: Sendable {
        public let name: String
        public let clientPort: UInt16
        public let peerPort: UInt16
        public let dataDirectory: String
        public var clientURL: String { "http://127.0.0.1:\(clientPort)" }
        public var peerURL: String { "http://127.0.0.1:\(peerPort)" }
    }

    public let members: [Member]
    let executable: String
    let logDirectory: String
    let initialCluster: String
    private let processes: Mutex<[ServerProcess?]>

    /// Every member's client URL, for `cluster.etcd`.
    public var endpoints: [String] { members.map(\.clientURL) }

    init(members: [Member], executable: String, logDirectory: String, initialCluster: String) {
        self.members = members
        self.executable = executable
        self.logDirectory = logDirectory
        self.initialCluster = initialCluster
        processes = Mutex(Array(repeating: nil, count: members.count))
    }

    deinit { stopAll() }

    /// Starts `size` members and waits until the cluster has a leader and answers writes.
    public static func start(in lab: LabDirectory, size: Int = 3) throws -> EtcdCluster {
        let etcd = try Programs.locate("etcd", package: "etcd-server")
        let base = try lab.directory("etcd")
        var members: [Member] = []
        var taken = Set<UInt16>()
        func port() throws -> UInt16 {
            while true {
                let candidate = try Ports.free()
                if taken.insert(candidate).inserted { return candidate }
            }
        }
        for index in 0..<size {
            members.append(
                Member(
                    name: "m\(index)", clientPort: try port(), peerPort: try port(),
                    dataDirectory: base + "/m\(index).data"))
        }
        let initial = members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        let cluster = EtcdCluster(members: members, executable: etcd, logDirectory: base, initialCluster: initial)
        for index in members.indices { try cluster.start(member: index) }
        try cluster.waitHealthy(timeout: .seconds(30))
        return cluster
    }

    /// Starts member `index` (again, after `stop(member:)`: its data directory is kept).
    public func start(member index: Int) throws {
        let member = members[index]
        let arguments = [
            "--name", member.name, "--data-dir", member.dataDirectory,
            "--listen-client-urls", member.clientURL, "--advertise-client-urls", member.clientURL,
            "--listen-peer-urls", member.peerURL, "--initial-advertise-peer-urls", member.peerURL,
            "--initial-cluster", initialCluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", "standby-lab-\(members[0].peerPort)",
            // The lab's three members share two cores with the tests: give the election some slack.
            "--heartbeat-interval", "100", "--election-timeout", "1000",
        ]
        let process = try ServerProcess.spawn(
            name: "etcd \(member.name)", executable: executable, arguments: arguments,
            logPath: logDirectory + "/\(member.name).log")
        try Ports.waitForTCP("127.0.0.1", member.clientPort, server: "etcd \(member.name)", process: process)
        processes.withLock { $0[index] = process }
    }

    /// Stops member `index` (SIGTERM to its pid, then SIGKILL); the others go on.
    public func stop(member index: Int) {
        let process = processes.withLock { list -> ServerProcess? in
            let process = list[index]
            list[index] = nil
            return process
        }
        process?.stop()
    }

    public func isRunning(member index: Int) -> Bool {
        processes.withLock { $0[index]?.isRunning ?? false }
    }

    public func stopAll() {
        for index in members.indices { stop(member: index) }
    }

    /// The members' pids, for `standby-lab`'s records.
    public var pids: [pid_t] { processes.withLock { $0.compactMap { $0?.pid } } }

    /// Waits until a write through `etcdctl` succeeds on the running members: the cluster has a
    /// leader and a quorum.
    public func waitHealthy(timeout: Duration = .seconds(30)) throws {
        let etcdctl = try Programs.locate("etcdctl", package: "etcd-client")
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            let running = members.indices.filter { isRunning(member: $0) }.map { members[$0].clientURL }
            let result = try StandbyBinary(path: etcdctl).run(
                [
                    "--endpoints", running.joined(separator: ","), "--command-timeout", "2s", "put",
                    "/standby-lab/health", "ok",
                ],
                environment: ["ETCDCTL_API": "3"])
            if result.status == 0 { return }
            last = result.stderr
            usleep(100_000)
        }
        let logs = members.map { member in
            let text = (try? String(contentsOfFile: logDirectory + "/\(member.name).log", encoding: .utf8)) ?? ""
            return "--- \(member.name)\n" + String(text.suffix(800))
        }
        throw LabError(
            .notReady, "etcd did not take a write within \(timeout): \(last)\n" + logs.joined(separator: "\n"))
    }
}
