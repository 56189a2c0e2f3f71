/// A readiness finding of `standby check`: what is wrong with the deployment's preparedness for a
/// site loss, how bad it is, and the one-line fix.
public struct Finding: Sendable, Codable, Hashable {
    public enum Severity: String, Sendable, Codable, Comparable {
        case error, warning, info

        private var rank: Int {
            switch self {
            case .error: 0
            case .warning: 1
            case .info: 2
            }
        }

        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    /// A stable slug, like `pool-name-reused`, that scripts and suppressions can rely on.
    public var id: String
    public var severity: Severity
    public var message: String
    public var fix: String
    /// The line of site.yaml the finding is about, when there is one.
    public var line: Int?

    public init(id: String, severity: Severity, message: String, fix: String, line: Int? = nil) {
        self.id = id
        self.severity = severity
        self.message = message
        self.fix = fix
        self.line = line
    }
}
