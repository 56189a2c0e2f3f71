import Foundation

/// Decides what is due. Pure: it reads the topology, the job records from the state store, a few
/// facts about the world and the clock it is handed, and does no I/O, so every rule is tested with
/// a fixed clock.
///
/// The rules:
/// - a set's snapshot replication every `schedule.every` after the last one finished;
/// - the daily full once `full_daily_at` (primary's local time) has passed today, inside the
///   primary's off-peak window when it has one;
/// - a full is a snapshot too: when both are due only the full runs, and the next snapshot is due
///   `schedule.every` after the full succeeded (a snapshot right after it would read the whole
///   source a second time for a version no newer);
/// - a job that was running when the service died is due at once (it continues where it was);
/// - a failed job is retried with a doubling delay (1 min, 2, 4 ... at most its period);
/// - a failover run waiting for the off-peak window is resumed while the secondary's window is open;
/// - `verify --sample` once a night inside the secondary's off-peak window (once a day without one);
/// - an overdue drill or review is raised as an alert, again every `service.remind_every`.
public struct Scheduler: Sendable {
    public var topology: Topology
    /// How long to wait between two resume attempts of a waiting run inside the window.
    public var resumeEvery: TimeSpan = .minutes(1)
    /// The first retry delay after a failure; it doubles with each failure.
    public var firstRetry: TimeSpan = .minutes(1)
    /// Sets with no schedule at all are replicated this often, so their RPO is still watched.
    public var defaultEvery: TimeSpan = .days(1)

    public init(topology: Topology) { self.topology = topology }

    /// The facts the scheduler reads besides the topology.
    public struct Inputs: Sendable {
        public var now: Date
        public var jobs: [String: JobRecord]
        /// A failover run is waiting for the secondary's off-peak window.
        public var failoverWaiting: Bool
        /// The newest successful drill recorded in the state store.
        public var lastDrill: Date?

        public init(now: Date, jobs: [String: JobRecord], failoverWaiting: Bool = false, lastDrill: Date? = nil) {
            self.now = now
            self.jobs = jobs
            self.failoverWaiting = failoverWaiting
            self.lastDrill = lastDrill
        }
    }

    /// A due job and why, for the log.
    public struct Due: Sendable, Hashable {
        public var job: ServiceJob
        public var reason: String
    }

    /// Every job due at `inputs.now`, in a stable order (fulls before snapshots of the same set).
    public func due(_ inputs: Inputs) -> [Due] {
        var due: [Due] = []
        for set in topology.backupSets {
            if let reason = fullDue(set, inputs) {
                due.append(Due(job: .replicate(set: set.name, full: true), reason: reason))
            } else if let reason = snapshotDue(set, inputs) {
                due.append(Due(job: .replicate(set: set.name, full: false), reason: reason))
            }
        }
        if inputs.failoverWaiting, let reason = resumeDue(inputs) {
            due.append(Due(job: .resumeFailover, reason: reason))
        }
        if let reason = verifyDue(inputs) {
            due.append(Due(job: .verifySample, reason: reason))
        }
        if topology.service.reminders {
            for reminder in ServiceJob.Reminder.allCases {
                if let reason = reminderDue(reminder, inputs) {
                    due.append(Due(job: .remind(reminder), reason: reason))
                }
            }
        }
        return due
    }

    // MARK: Rules

    func snapshotDue(_ set: BackupSet, _ inputs: Inputs) -> String? {
        let period = set.schedule.every ?? (set.schedule.fullDailyAt == nil ? defaultEvery : nil)
        guard let period else { return nil }
        return periodic(lastSnapshot(of: set.name, in: inputs.jobs), period: period, now: inputs.now)
    }

    /// The snapshot's record, or the full's when the full succeeded after the snapshot last started
    /// or finished: the full stored a version of the set from the whole source, so it counts as the
    /// snapshot, done (and an interrupted or failed snapshot before it is superseded).
    func lastSnapshot(of set: String, in jobs: [String: JobRecord]) -> JobRecord? {
        let key = ServiceJob.replicate(set: set, full: false).key
        let snapshot = jobs[key]
        let snapshotLatest = [snapshot?.lastStarted, snapshot?.lastFinished].compactMap { $0 }.max()
        guard let full = jobs[ServiceJob.replicate(set: set, full: true).key], let succeeded = full.lastSucceeded,
            snapshotLatest.map({ succeeded > $0 }) ?? true
        else { return snapshot }
        // Not the full's start when a later full runs now (or was cut): that one is the full's own
        // business, and would make the snapshot look interrupted.
        return JobRecord(
            key: key, lastStarted: full.lastStarted.flatMap { $0 <= succeeded ? $0 : nil }, lastFinished: succeeded,
            lastSucceeded: succeeded, detail: "by the daily full: \(full.detail)")
    }

    func fullDue(_ set: BackupSet, _ inputs: Inputs) -> String? {
        guard let at = set.schedule.fullDailyAt else { return nil }
        let record = inputs.jobs[ServiceJob.replicate(set: set.name, full: true).key]
        if let record, record.interrupted {
            return "continues the daily full interrupted at \(stamp(record.lastStarted))"
        }
        let zone = topology.primary.timezone
        guard let occurrence = Self.latestOccurrence(ofMinute: at, atOrBefore: inputs.now, in: zone) else { return nil }
        // Done (or given up on after a failure) since today's occurrence: nothing to do until tomorrow,
        // except retrying a failure.
        if let finished = record?.lastFinished, finished >= occurrence {
            guard let record, record.failures > 0, let retry = retryAt(record, period: .days(1)),
                inputs.now >= retry
            else { return nil }
        }
        let windows = topology.primary.offPeak
        if !windows.isEmpty, !windows.contains(inputs.now, in: zone) { return nil }
        return "daily full of \(TimeWindow.clock(at)) \(zone.identifier)"
    }

    func resumeDue(_ inputs: Inputs) -> String? {
        let windows = topology.secondary.offPeak
        guard !windows.isEmpty, windows.contains(inputs.now, in: topology.secondary.timezone) else { return nil }
        if let record = inputs.jobs[ServiceJob.resumeFailover.key], !record.interrupted,
            let finished = record.lastFinished, inputs.now < finished.addingTimeInterval(resumeEvery.seconds)
        {
            return nil
        }
        return "the secondary's off-peak window is open"
    }

    func verifyDue(_ inputs: Inputs) -> String? {
        let record = inputs.jobs[ServiceJob.verifySample.key]
        if let record, record.interrupted {
            return "continues the verification interrupted at \(stamp(record.lastStarted))"
        }
        let windows = topology.secondary.offPeak
        let zone = topology.secondary.timezone
        if windows.isEmpty {
            return periodic(record, period: .days(1), now: inputs.now)
        }
        guard windows.contains(inputs.now, in: zone) else { return nil }
        // Once per opening of the window: this opening began at most a day ago.
        guard let opened = Self.currentOpening(of: windows, at: inputs.now, in: zone) else { return nil }
        if let finished = record?.lastFinished, finished >= opened {
            guard let record, record.failures > 0, let retry = retryAt(record, period: .hours(6)), inputs.now >= retry
            else { return nil }
        }
        return "nightly sample inside the secondary's off-peak window"
    }

    func reminderDue(_ reminder: ServiceJob.Reminder, _ inputs: Inputs) -> String? {
        let policy = topology.policy
        let last: Date?
        let every: TimeSpan
        switch reminder {
        case .drill:
            last = [policy.lastDrill, inputs.lastDrill].compactMap { $0 }.max()
            every = policy.drillEvery
        case .review:
            last = policy.lastReview
            every = policy.reviewEvery
        }
        let dueSince = last.map { $0.addingTimeInterval(every.seconds) }
        if let dueSince, inputs.now < dueSince { return nil }
        let record = inputs.jobs[ServiceJob.remind(reminder).key]
        if let sent = record?.lastSucceeded, inputs.now < sent.addingTimeInterval(topology.service.remindEvery.seconds)
        {
            return nil
        }
        if let record, record.failures > 0, let retry = retryAt(record, period: topology.service.remindEvery),
            inputs.now < retry
        {
            return nil
        }
        switch reminder {
        case .drill:
            return last.map { "the last drill was \(Self.day($0)); one is due every \(every)" }
                ?? "no drill is recorded; one is due every \(every)"
        case .review:
            return last.map { "the plan was last reviewed \(Self.day($0)); a review is due every \(every)" }
                ?? "no review of the plan is recorded; one is due every \(every)"
        }
    }

    // MARK: Helpers

    /// Due when never run, when interrupted, when `period` has passed since the last finish, or when
    /// a failure's retry delay has passed.
    func periodic(_ record: JobRecord?, period: TimeSpan, now: Date) -> String? {
        guard let record, let finished = record.lastFinished else {
            if let record, record.interrupted { return "continues the run interrupted at \(stamp(record.lastStarted))" }
            return "never run"
        }
        if record.interrupted { return "continues the run interrupted at \(stamp(record.lastStarted))" }
        if record.failures > 0 {
            if let retry = retryAt(record, period: period), now >= retry {
                return "retry \(record.failures) after: \(record.detail)"
            }
            return nil
        }
        return now >= finished.addingTimeInterval(period.seconds) ? "every \(period)" : nil
    }

    /// When a failed job is retried: 1 min, 2, 4 ... after the failure, never later than `period`.
    func retryAt(_ record: JobRecord, period: TimeSpan) -> Date? {
        guard let finished = record.lastFinished, record.failures > 0 else { return nil }
        let exponent = min(record.failures - 1, 20)
        let delay = min(firstRetry.seconds * pow(2, Double(exponent)), period.seconds)
        return finished.addingTimeInterval(delay)
    }

    func stamp(_ date: Date?) -> String {
        date.map { ISO8601DateFormatter().string(from: $0) } ?? "?"
    }

    static func day(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        return formatter.string(from: date)
    }

    /// The newest moment at or before `date` whose local time in `zone` is `minute` after midnight.
    static func latestOccurrence(ofMinute minute: Int, atOrBefore date: Date, in zone: TimeZone) -> Date? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let today = calendar.startOfDay(for: date)
        for offset in [0, -1, -2] {
            guard let day = calendar.date(byAdding: .day, value: offset, to: today),
                let at = calendar.date(
                    bySettingHour: minute / 60, minute: minute % 60, second: 0, of: day, matchingPolicy: .nextTime)
            else { continue }
            if at <= date { return at }
        }
        return nil
    }

    /// When the off-peak window that contains `date` opened (nil when none contains it).
    static func currentOpening(of windows: [TimeWindow], at date: Date, in zone: TimeZone) -> Date? {
        windows.filter { $0.contains(date, in: zone) }
            .compactMap { latestOccurrence(ofMinute: $0.start, atOrBefore: date, in: zone) }
            .max()
    }
}
