import Foundation

/// What `standby run` knows at one moment: every set's RPO, every probe, the health timeline, a
/// running failover and the jobs. The endpoint renders it as metrics, JSON and the status page.
public struct ServiceSnapshot: Sendable, Codable {
    public var deployment: String
    public var primarySite: String
    public var secondarySite: String
    public var generatedAt: Date
    public var startedAt: Date
    public var sets: [SetLine] = []
    public var probes: [ProbeLine] = []
    public var sites: [SiteLine] = []
    /// Newest first.
    public var timeline: [TimelineEvent] = []
    public var failover: FailoverLine?
    /// Cluster mode: this node, the leader and the nodes, as etcd says now.
    public var cluster: ClusterLine?
    public var jobs: [JobLine] = []
    /// Problems reading a part of the state, shown on the page rather than hidden.
    public var problems: [String] = []

    public init(deployment: String, primarySite: String, secondarySite: String, generatedAt: Date, startedAt: Date) {
        self.deployment = deployment
        self.primarySite = primarySite
        self.secondarySite = secondarySite
        self.generatedAt = generatedAt
        self.startedAt = startedAt
    }

    public struct SetLine: Sendable, Codable, Hashable {
        public var name: String
        public var kind: String
        public var rpoTargetSeconds: Double
        /// Capture time of the newest verified version; nil when there is none.
        public var capturedAt: Date?
        public var lastVerifiedAt: Date?
        public var storedBytes: Int64
        public var versions: Int
        public var replicating: Bool

        public init(
            name: String, kind: String, rpoTargetSeconds: Double, capturedAt: Date? = nil, lastVerifiedAt: Date? = nil,
            storedBytes: Int64 = 0, versions: Int = 0, replicating: Bool = false
        ) {
            self.name = name
            self.kind = kind
            self.rpoTargetSeconds = rpoTargetSeconds
            self.capturedAt = capturedAt
            self.lastVerifiedAt = lastVerifiedAt
            self.storedBytes = storedBytes
            self.versions = versions
            self.replicating = replicating
        }

        /// Now minus the capture time of the newest verified version.
        public func rpoAgeSeconds(at now: Date) -> Double? { capturedAt.map { max(0, now.timeIntervalSince($0)) } }
    }

    public struct ProbeLine: Sendable, Codable, Hashable {
        public var name: String
        public var site: String
        public var kind: String
        public var target: String
        /// After hysteresis: up, down, unknown.
        public var state: String
        /// The last attempt: nil before the first.
        public var lastOutcome: String?
        public var latencySeconds: Double?
        public var at: Date?
        public var detail: String

        public init(
            name: String, site: String, kind: String, target: String, state: String, lastOutcome: String? = nil,
            latencySeconds: Double? = nil, at: Date? = nil, detail: String = ""
        ) {
            self.name = name
            self.site = site
            self.kind = kind
            self.target = target
            self.state = state
            self.lastOutcome = lastOutcome
            self.latencySeconds = latencySeconds
            self.at = at
            self.detail = detail
        }
    }

    public struct SiteLine: Sendable, Codable, Hashable {
        public var site: String
        public var verdict: String
        public var since: Date?
        public var detail: String

        public init(site: String, verdict: String, since: Date?, detail: String) {
            self.site = site
            self.verdict = verdict
            self.since = since
            self.detail = detail
        }
    }

    public struct TimelineEvent: Sendable, Codable, Hashable {
        public var at: Date
        /// A site name (primary, secondary) or a probe name.
        public var subject: String
        public var site: String
        public var isSite: Bool
        public var from: String
        public var to: String
        public var detail: String

        public init(at: Date, subject: String, site: String, isSite: Bool, from: String, to: String, detail: String) {
            self.at = at
            self.subject = subject
            self.site = site
            self.isSite = isSite
            self.from = from
            self.to = to
            self.detail = detail
        }
    }

    public struct FailoverLine: Sendable, Codable, Hashable {
        public var runId: String
        public var scenario: String
        public var lead: String
        public var state: String
        public var declaredAt: Date
        public var finishedAt: Date?
        /// The stage and step the run is at (the first step not finished).
        public var currentStage: Int?
        public var currentStep: String?
        public var waitingFor: String?
        public var stages: [StageLine]

        public init(
            runId: String, scenario: String, lead: String, state: String, declaredAt: Date, finishedAt: Date?,
            currentStage: Int?, currentStep: String?, waitingFor: String?, stages: [StageLine]
        ) {
            self.runId = runId
            self.scenario = scenario
            self.lead = lead
            self.state = state
            self.declaredAt = declaredAt
            self.finishedAt = finishedAt
            self.currentStage = currentStage
            self.currentStep = currentStep
            self.waitingFor = waitingFor
            self.stages = stages
        }

        public func durationSeconds(at now: Date) -> Double { (finishedAt ?? now).timeIntervalSince(declaredAt) }
    }

    public struct StageLine: Sendable, Codable, Hashable {
        public var number: Int
        public var kind: String
        public var steps: [StepLine]

        public init(number: Int, kind: String, steps: [StepLine]) {
            self.number = number
            self.kind = kind
            self.steps = steps
        }
    }

    public struct StepLine: Sendable, Codable, Hashable {
        public var id: String
        public var service: String
        public var summary: String
        public var state: String
        public var durationSeconds: Double?
        /// Cluster mode: the node that executed the step.
        public var node: String?

        public init(
            id: String, service: String, summary: String, state: String, durationSeconds: Double?,
            node: String? = nil
        ) {
            self.id = id
            self.service = service
            self.summary = summary
            self.state = state
            self.durationSeconds = durationSeconds
            self.node = node
        }
    }

    public struct ClusterLine: Sendable, Codable, Hashable {
        /// The node serving this page.
        public var node: String
        /// The node holding the leader key; nil while none does.
        public var leader: String?
        /// The leader key's create revision (the term).
        public var term: Int64?
        /// Every registered node, sorted.
        public var nodes: [String]

        public init(node: String, leader: String?, term: Int64?, nodes: [String]) {
            self.node = node
            self.leader = leader
            self.term = term
            self.nodes = nodes
        }
    }

    public struct JobLine: Sendable, Codable, Hashable {
        public var key: String
        public var running: Bool
        public var lastStarted: Date?
        public var lastFinished: Date?
        public var lastSucceeded: Date?
        public var failures: Int
        public var detail: String

        public init(record: JobRecord, running: Bool) {
            key = record.key
            self.running = running
            lastStarted = record.lastStarted
            lastFinished = record.lastFinished
            lastSucceeded = record.lastSucceeded
            failures = record.failures
            detail = record.detail
        }
    }
}
