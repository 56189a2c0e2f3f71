import Foundation
import Logging
import StandbyDNS
import StandbyLab
import Synchronization
import Testing

extension Tag {
    @Tag static var server: Self
}

/// The SIP SRV zone of a deployment, served by BIND 9 (primary master, takes updates) and Knot
/// (secondary, fed by NOTIFY + zone transfer), both on loopback ports in a fresh directory.
struct SIPZoneLab {
    static let zone = "contoso.test"
    static let internalTLS = "_sipinternaltls._tcp"
    static let sip = "_sip._tcp"
    static let primaryValues = [
        internalTLS: "0 0 5061 pool01.contoso.test.",
        sip: "0 0 443 sip.contoso.test.",
    ]
    static let secondaryValues = [
        internalTLS: "0 0 5061 pool02-dr.contoso.test.",
        sip: "0 0 443 sip-dr.contoso.test.",
    ]

    /// A third set of values: another controller's idea, or a stale expectation.
    static let thirdValues = [
        internalTLS: "0 0 5061 pool03.contoso.test.",
        sip: "0 0 443 sip-3.contoso.test.",
    ]

    let lab: LabDirectory
    let named: NamedServer
    let knot: KnotServer
    let logs = CapturedLogs()

    static func start(algorithm: String = "hmac-sha256", grant: String = "zonesub ANY") throws -> SIPZoneLab {
        let lab = try LabDirectory(prefix: "standby-dns")
        let knotPort = try KnotServer.reservePort()
        let named = try NamedServer.start(
            in: lab, zone: zone,
            records: [
                "\(internalTLS) 300 IN SRV \(primaryValues[internalTLS] ?? "")",
                "\(sip) 300 IN SRV \(primaryValues[sip] ?? "")",
            ],
            algorithm: algorithm, grant: grant, notify: [knotPort])
        let knot = try KnotServer.start(in: lab, zone: zone, primaryPort: named.port, port: knotPort)
        return SIPZoneLab(lab: lab, named: named, knot: knot)
    }

    func stop() {
        knot.stop()
        named.stop()
        lab.remove()
    }

    var servers: [DNSServer] {
        get throws { try [DNSServer(parsing: named.address), DNSServer(parsing: knot.address)] }
    }

    var logger: Logger {
        let logs = self.logs
        var logger = Logger(label: "standby.dns.test") { _ in CapturingLogHandler(logs: logs) }
        logger.logLevel = .debug
        return logger
    }

    func key() throws -> TSIGKey { try TSIGKey.load(path: named.keyPath) }

    /// The two SIP records moving from `from` to `to` ("primary"/"secondary" value tables).
    static func changes(from: [String: String], to: [String: String], ttl: UInt32 = 300) -> [RecordChange] {
        [internalTLS, sip].map { name in
            RecordChange(name: name, type: "SRV", ttl: ttl, from: [from[name] ?? ""], to: [to[name] ?? ""])
        }
    }

    func cutover(
        from: [String: String], to: [String: String], key: TSIGKey? = nil, verifyTimeout: Duration = .seconds(20)
    ) throws -> DNSCutover {
        try DNSCutover(
            zone: Self.zone, servers: servers, key: key ?? self.key(), changes: Self.changes(from: from, to: to),
            timeout: .seconds(2), verifyTimeout: verifyTimeout, logger: logger)
    }

    /// The SOA serial `dig` sees on a server.
    func serial(_ server: Int) throws -> UInt32? {
        try dig(server, "@", "SOA").first.flatMap { line in
            line.split(separator: " ").dropFirst(2).first.flatMap { UInt32($0) }
        }
    }

    /// Both records on both servers, as dig shows them: [server][record].
    func digBoth() throws -> [[[String]]] {
        try [0, 1].map { server in try [Self.internalTLS, Self.sip].map { try dig(server, $0) } }
    }

    static func expected(_ values: [String: String]) -> [[[String]]] {
        let one = [internalTLS, sip].map { [values[$0] ?? ""] }
        return [one, one]
    }
}

extension SIPZoneLab {
    /// What `dig` gets from named (index 0) or knotd (index 1) for `name` ("@" for the apex).
    func dig(_ server: Int, _ name: String, _ type: String = "SRV") throws -> [String] {
        let (host, port) = server == 0 ? (named.host, named.port) : (knot.host, knot.port)
        let owner = name == "@" ? "\(Self.zone)." : "\(name).\(Self.zone)."
        return try LabTool.dig(host, port, owner, type)
    }
}

/// Log lines captured in memory, so tests can assert on them (and that no secret is logged).
final class CapturedLogs: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

struct CapturingLogHandler: LogHandler {
    let logs: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        logs.append("\(event.level) \(event.message) \(event.metadata ?? [:])")
    }
}

extension SIPZoneLab {
    /// A logger that drops everything, for tests that start no servers.
    static var testLogger: Logger { Logger(label: "standby.dns.test") { _ in SwiftLogNoOpLogHandler() } }
}
