import Foundation
import Logging
import StandbyTransport
import Synchronization

/// One key of etcd as a range answers it.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: String
    public var value: Data
    public var createRevision: Int64
    public var modRevision: Int64
    public var lease: Int64

    public var text: String { String(decoding: value, as: UTF8.self) }
}

/// A condition of a transaction (etcd's `Compare`).
public enum EtcdCompare: Sendable {
    /// The key's create revision is `revision`; 0 means the key does not exist.
    case createRevision(String, Int64)
    case modRevision(String, Int64)
    case value(String, Data)
}

/// An operation of a transaction's branch.
public enum EtcdOperation: Sendable {
    case put(String, Data, lease: Int64 = 0)
    case delete(String)
    /// Every key that starts with the prefix.
    case deletePrefix(String)
    case range(String)
}

/// What a transaction answered: which branch ran and, for each `range` of it, the keys it read.
public struct EtcdTxnResult: Sendable {
    public var succeeded: Bool
    public var revision: Int64
    public var ranges: [[EtcdKeyValue]]
}

/// etcd v3 through its JSON gateway (`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/...`; keys and
/// values base64), over Standby's one libcurl wrapper, as Patroni's etcd3 driver does.
///
/// The calls block (one libcurl transfer each, bounded by `timeout`); a client keeps one
/// connection and serialises its calls, so the lease keepalive and the journal use clients of
/// their own. A member that cannot be reached, has no leader or times out is left for the next
/// endpoint; the error names every endpoint tried.
public final class EtcdClient: Sendable {
    public let endpoints: [String]
    public let timeout: Duration
    let logger: Logger
    private struct State: ~Copyable {
        var session: TransferSession?
        var preferred: Int
    }
    private let state: Mutex<State>

    public init(endpoints: [String], timeout: Duration = .seconds(2), logger: Logger) {
        self.endpoints = endpoints
        self.timeout = timeout
        self.logger = logger
        state = Mutex(State(session: nil, preferred: 0))
    }

    // MARK: KV

    /// The key, or nil.
    public func get(_ key: String) throws -> EtcdKeyValue? {
        try range(key, prefix: false).first
    }

    /// Every key under `prefix`, in key order.
    public func list(prefix: String) throws -> [EtcdKeyValue] {
        try range(prefix, prefix: true)
    }

    func range(_ key: String, prefix: Bool) throws -> [EtcdKeyValue] {
        var body: [String: Any] = ["key": Self.base64(key)]
        if prefix { body["range_end"] = Self.base64(Self.prefixEnd(key)) }
        let answer = try call("/v3/kv/range", body, what: "read \(key)")
        return Self.keyValues(answer["kvs"])
    }

    public func put(_ key: String, _ value: Data, lease: Int64 = 0) throws {
        var body: [String: Any] = ["key": Self.base64(key), "value": value.base64EncodedString()]
        if lease != 0 { body["lease"] = String(lease) }
        _ = try call("/v3/kv/put", body, what: "write \(key)")
    }

    public func delete(_ key: String) throws {
        _ = try call("/v3/kv/deleterange", ["key": Self.base64(key)], what: "delete \(key)")
    }

    /// One transaction: `success` runs when every comparison holds, else `failure`.
    public func txn(
        _ compare: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = [], what: String
    ) throws -> EtcdTxnResult {
        let body: [String: Any] = [
            "compare": compare.map(Self.json), "success": success.map(Self.json), "failure": failure.map(Self.json),
        ]
        let answer = try call("/v3/kv/txn", body, what: what)
        let succeeded = (answer["succeeded"] as? Bool) ?? false
        var ranges: [[EtcdKeyValue]] = []
        for response in (answer["responses"] as? [[String: Any]]) ?? [] {
            if let range = response["response_range"] as? [String: Any] {
                ranges.append(Self.keyValues(range["kvs"]))
            }
        }
        return EtcdTxnResult(succeeded: succeeded, revision: Self.revision(answer), ranges: ranges)
    }

    // MARK: Leases

    /// A new lease of `ttl` seconds; its id.
    public func grantLease(ttl: Int) throws -> Int64 {
        let answer = try call("/v3/lease/grant", ["TTL": String(ttl)], what: "grant a lease")
        guard let id = Self.int64(answer["ID"]), id != 0 else {
            throw FailoverError(.cluster, "etcd granted no lease: \(answer)")
        }
        return id
    }

    /// Renews the lease; its remaining TTL in seconds, 0 when it has expired (or was revoked).
    public func keepAlive(_ lease: Int64) throws -> Int64 {
        let answer = try call("/v3/lease/keepalive", ["ID": String(lease)], what: "renew lease \(lease)")
        let result = answer["result"] as? [String: Any] ?? answer
        return Self.int64(result["TTL"]) ?? 0
    }

    /// The lease's remaining TTL in seconds; -1 when it no longer exists.
    public func timeToLive(_ lease: Int64) throws -> Int64 {
        let answer = try call("/v3/kv/lease/timetolive", ["ID": String(lease)], what: "read lease \(lease)")
        return Self.int64(answer["TTL"]) ?? -1
    }

    public func revoke(_ lease: Int64) throws {
        _ = try call("/v3/kv/lease/revoke", ["ID": String(lease)], what: "revoke lease \(lease)")
    }

    // MARK: HTTP

    /// Posts `body` to `path` on the preferred member, then on the others in turn.
    func call(_ path: String, _ body: [String: Any], what: String) throws -> [String: Any] {
        let payload = try JSONSerialization.data(withJSONObject: body)
        let answer: Data = try state.withLock { state throws -> Data in
            var failures: [String] = []
            for offset in 0..<endpoints.count {
                let index = (state.preferred + offset) % endpoints.count
                let endpoint = endpoints[index]
                guard let url = URL(string: endpoint + path) else {
                    failures.append("\(endpoint): not a URL")
                    continue
                }
                do {
                    if state.session == nil {
                        var options = TransportOptions()
                        options.connectTimeout = .milliseconds(500)
                        state.session = try TransferSession(options: options, logger: logger)
                    }
                    guard let session = state.session else { continue }
                    let request = HTTPRequest(
                        method: "POST", url: url, headers: [("Content-Type", "application/json")], body: payload,
                        timeout: timeout, maxResponseBytes: 64 << 20)
                    let response = try session.request(request)
                    if response.status == 200 {
                        state.preferred = index
                        return response.body
                    }
                    let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:]
                    let message = (object["message"] as? String) ?? (object["error"] as? String) ?? response.bodyText
                    failures.append("\(endpoint): HTTP \(response.status): \(message)")
                } catch {
                    // A fresh connection for the next member: this one may be half open.
                    state.session = nil
                    failures.append("\(endpoint): \(error)")
                }
            }
            throw FailoverError(
                .cluster, "etcd: cannot \(what): no member answered (\(failures.joined(separator: "; ")))")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: answer)) as? [String: Any] else {
            throw FailoverError(.cluster, "etcd: cannot \(what): the answer is not JSON")
        }
        return object
    }

    // MARK: JSON

    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    /// The smallest key after every key that starts with `prefix` (etcd's `range_end`).
    static func prefixEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes.removeLast()
        }
        return "\0"
    }

    static func int64(_ value: Any?) -> Int64? {
        if let text = value as? String { return Int64(text) }
        if let number = value as? NSNumber { return number.int64Value }
        return nil
    }

    static func revision(_ answer: [String: Any]) -> Int64 {
        int64((answer["header"] as? [String: Any])?["revision"]) ?? 0
    }

    static func keyValues(_ value: Any?) -> [EtcdKeyValue] {
        guard let list = value as? [[String: Any]] else { return [] }
        return list.compactMap { item -> EtcdKeyValue? in
            guard let key = (item["key"] as? String).flatMap({ Data(base64Encoded: $0) }) else { return nil }
            let value = (item["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
            return EtcdKeyValue(
                key: String(decoding: key, as: UTF8.self), value: value,
                createRevision: int64(item["create_revision"]) ?? 0, modRevision: int64(item["mod_revision"]) ?? 0,
                lease: int64(item["lease"]) ?? 0)
        }
    }

    static func json(_ compare: EtcdCompare) -> [String: Any] {
        switch compare {
        case .createRevision(let key, let revision):
            ["key": base64(key), "target": "CREATE", "result": "EQUAL", "create_revision": String(revision)]
        case .modRevision(let key, let revision):
            ["key": base64(key), "target": "MOD", "result": "EQUAL", "mod_revision": String(revision)]
        case .value(let key, let value):
            ["key": base64(key), "target": "VALUE", "result": "EQUAL", "value": value.base64EncodedString()]
        }
    }

    static func json(_ operation: EtcdOperation) -> [String: Any] {
        switch operation {
        case .put(let key, let value, let lease):
            var put: [String: Any] = ["key": base64(key), "value": value.base64EncodedString()]
            if lease != 0 { put["lease"] = String(lease) }
            return ["request_put": put]
        case .delete(let key):
            return ["request_delete_range": ["key": base64(key)]]
        case .deletePrefix(let prefix):
            return ["request_delete_range": ["key": base64(prefix), "range_end": base64(prefixEnd(prefix))]]
        case .range(let key):
            return ["request_range": ["key": base64(key)]]
        }
    }
}
