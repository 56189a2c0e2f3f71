import Logging

/// A record set by name and type, to look at without changing it.
public struct RecordSetName: Sendable, Hashable {
    public var name: String
    public var type: String

    public init(name: String, type: String) {
        self.name = name
        self.type = type.uppercased()
    }
}

extension DNSCutover {
    /// What every server serves now for each record set, without a key (for `standby dns show`).
    /// Never throws: a server that cannot be asked says why in its state. In the order of `servers`.
    public static func survey(
        zone: String, servers: [DNSServer], records: [RecordSetName], timeout: Duration = .seconds(3),
        logger: Logger
    ) async -> [ServerState] {
        let client = DNSClient(timeout: timeout, logger: logger)
        return await withTaskGroup(of: (Int, ServerState).self) { group in
            for (index, server) in servers.enumerated() {
                group.addTask {
                    var answers: [RecordSetAnswer] = []
                    var problem: String?
                    for record in records {
                        do throws(DNSError) {
                            answers.append(
                                try await client.query(server, name: record.name, type: record.type, zone: zone))
                        } catch {
                            problem = error.message
                            break
                        }
                    }
                    let serial = answers.first?.soaSerial
                    return (
                        index,
                        ServerState(
                            server: server, records: answers, soaSerial: serial, problem: problem, verified: false,
                            elapsed: nil)
                    )
                }
            }
            var states: [(Int, ServerState)] = []
            for await state in group { states.append(state) }
            return states.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }
}
