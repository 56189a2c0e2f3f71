import Foundation

/// The JSON body posted to each webhook when a site's verdict changes.
public struct HealthAlert: Sendable, Hashable, Codable {
    public struct ProbeLine: Sendable, Hashable, Codable {
        public var name: String
        public var state: String
        public var detail: String
    }

    /// Who is talking (a deployment name, say), from the watcher's configuration.
    public var source: String
    public var site: ProbeSite
    public var from: String
    public var to: String
    public var at: Date
    public var detail: String
    public var probes: [ProbeLine]
    /// The controller that posted it, when several watch (cluster mode); absent otherwise.
    public var node: String? = nil

    public func json() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(self))
    }
}

/// Delivers an alert body to one webhook URL; throws when the hook did not take it (so it is retried).
public protocol AlertSender: Sendable {
    func post(_ body: [UInt8], to url: String) async throws
}
