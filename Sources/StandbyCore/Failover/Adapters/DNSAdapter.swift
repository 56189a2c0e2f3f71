import Foundation
import Logging
import StandbyDNS

/// Stage 2 through StandbyDNS: one TSIG-signed compare-and-swap update, then every authoritative
/// server verified. Safe to run again after a crash: records already at their targets make it a
/// verified no-op.
public struct DNSAdapter: DNSCutting {
    public var logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func cutover(_ settings: DNSSettings, changes: [FailoverPlan.DNSChange], baseDirectory: String)
        async throws -> DNSCutoverResult
    {
        let cutover = try Self.cutover(settings, changes: changes, baseDirectory: baseDirectory, logger: logger)
        // A failed prerequisite (someone else changed the records, nothing was changed) is a
        // refusal: the engine sees its outcome and does not retry.
        let result = try await cutover.run()
        // What failback puts back: the values found before the update, or, when a resumed run
        // finds the records already moved, the values the plan replaced.
        let replaced: [ReplacedRecord]
        if result.outcome == .applied {
            replaced = zip(changes, result.before).map { change, answer in
                ReplacedRecord(
                    name: change.name, type: change.type, ttl: answer.ttl.map(Int.init) ?? change.ttl,
                    values: answer.rdata)
            }
        } else {
            replaced = changes.map { ReplacedRecord(name: $0.name, type: $0.type, ttl: $0.ttl, values: $0.from) }
        }
        return DNSCutoverResult(
            replaced: replaced, verifiedOn: result.servers.filter(\.verified).map(\.server.description),
            log: result.description)
    }

    /// The key (or the GSS-TSIG credential) loads, the primary master accepts the dry run's signed
    /// no-op update, every server answers authoritatively. A key-file problem is bad input; anything else is a refusal.
    public func preflight(_ settings: DNSSettings, changes: [FailoverPlan.DNSChange], baseDirectory: String)
        async throws -> String
    {
        do {
            let cutover = try Self.cutover(settings, changes: changes, baseDirectory: baseDirectory, logger: logger)
            return try await cutover.preflight().description
        } catch {
            switch error.code {
            case .keyFile, .keyPermissions: throw FailoverError(.badInput, error.message)
            case .invalidInput: throw FailoverError(.badInput, "dns: \(error.message)")
            default: throw FailoverError(.refused, error.description)
            }
        }
    }

    static func cutover(
        _ settings: DNSSettings, changes: [FailoverPlan.DNSChange], baseDirectory: String, logger: Logger
    ) throws(DNSError) -> DNSCutover {
        let servers = try settings.servers.map { text throws(DNSError) in try DNSServer(parsing: text) }
        let recordChanges = changes.map {
            RecordChange(name: $0.name, type: $0.type, ttl: UInt32(clamping: $0.ttl), from: $0.from, to: $0.to)
        }
        return try DNSCutover(
            zone: settings.zone, servers: servers, auth: try settings.authentication(baseDirectory: baseDirectory),
            changes: recordChanges,
            verifyTimeout: settings.verifyTimeout.duration, logger: logger)
    }
}
