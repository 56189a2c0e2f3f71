/// The `service:` section: how `standby run` serves its read-only HTTP endpoint and how often it
/// repeats reminders. Every key is optional.
public struct ServiceSettings: Sendable {
    /// `host:port` of the HTTP endpoint (metrics, health, status page). Loopback unless the file says so.
    public var listen: String = "127.0.0.1:9470"
    /// A file holding the bearer token the endpoint requires; nil means no token. It must not be
    /// readable by group or others.
    public var tokenFile: String?
    /// Fraction of the stored chunks the nightly `verify --sample` re-reads (0 < f <= 1).
    public var verifySample: Double = 0.05
    /// How often an overdue drill or review is raised again as an alert.
    public var remindEvery: TimeSpan = .days(1)
    /// Whether drill and review reminders are raised at all.
    public var reminders: Bool = true
    public var location: SourceLocation = .unknown

    public init() {}
}
