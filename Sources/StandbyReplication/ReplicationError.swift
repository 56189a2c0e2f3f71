import StandbyBase
import StandbyTransport

/// What went wrong in replication, publishing, verification or restore. The message names the
/// set (and the host, for a source problem), the file or the store, and the cause.
public struct ReplicationError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        case unreachableHost
        case connectionRefused
        case loginDenied
        case notFound
        case timeout
        case tls
        /// Any other failure to read the source.
        case sourceUnreadable
        /// The source ended before the size it announced.
        case sourceTruncated
        /// The source's size or modification time changed while it was read.
        case sourceChanged
        /// The store's disk is full (ENOSPC).
        case storeFull
        /// A chunk in a pack does not hash to its id, or a pack is missing or unreadable.
        case corruptPack
        /// The store was written by a newer version of Standby.
        case storeTooNew
        /// Another process holds the store's lock (a replicate or a garbage collection runs).
        case storeBusy
        /// Any other I/O failure at the store.
        case storeIO
        /// The catalog database failed.
        case catalog
        case noSuchSet
        case noSuchVersion
        /// A restored file does not hash to the whole-file SHA-256 recorded at replication.
        case hashMismatch
        /// Bad input from the caller (an empty set, two sources with one name).
        case invalidInput
        case cancelled
    }

    public var code: Code
    public var message: String
    /// The backup set concerned, when there is one.
    public var set: String?
    /// The source host concerned, when the failure is at the source.
    public var host: String?

    public init(_ code: Code, _ message: String, set: String? = nil, host: String? = nil) {
        self.code = code
        self.message = message
        self.set = set
        self.host = host
    }

    public var description: String {
        var prefix = ""
        if let set { prefix += "set \(set): " }
        if let host { prefix += "\(host): " }
        return prefix + message
    }

    /// A transport failure reading a source of `set`, keeping its code.
    static func source(_ error: TransportError, set: String) -> ReplicationError {
        let code: Code
        switch error.code {
        case .unreachableHost: code = .unreachableHost
        case .connectionRefused: code = .connectionRefused
        case .loginDenied: code = .loginDenied
        case .notFound: code = .notFound
        case .timeout: code = .timeout
        case .tls: code = .tls
        case .truncated: code = .sourceTruncated
        case .cancelled: code = .cancelled
        default: code = .sourceUnreadable
        }
        return ReplicationError(code, "\(error.message) (\(error.url))", set: set, host: error.host)
    }
}

extension ReplicationError: StandbyFailure {
    /// A set, version or input that does not exist is bad input; a store another command holds,
    /// or one written by a newer Standby, is refused; the rest failed.
    public var outcome: FailureOutcome {
        switch code {
        case .invalidInput, .noSuchSet, .noSuchVersion: .badInput
        case .storeBusy, .storeTooNew: .refused
        default: .failed
        }
    }
    public var place: String? {
        let parts = [set.map { "set \($0)" }, host].compactMap { $0 }
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }
}
