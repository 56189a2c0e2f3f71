import Foundation
import StandbyCore
import Testing

/// The scheduling rules, each with a fixed clock. The topology's primary is in New York (off-peak
/// 20:00-06:00), the secondary in Dublin (off-peak 22:00-05:00).
@Suite struct SchedulerTests {
    static let yaml = """
        deployment: fabrikam
        domain: fabrikam.com
        sites:
          primary: { name: nyc, timezone: America/New_York, pool: pool01.fabrikam.com, off_peak: ["20:00-06:00"] }
          secondary:
            name: dublin
            timezone: Europe/Dublin
            pool: pool02-dr.fabrikam.com
            off_peak: ["22:00-05:00"]
            standby_servers: [{ host: dub-fe01.fabrikam.com, roles: [front-end] }]
        backup_sets:
          - { name: rtc-db, kind: database, source: "https://sql01.fabrikam.com/rtc.bak", schedule: { every: 4h, full_daily_at: "01:00" }, rpo: 24h }
          - { name: noon, kind: settings, source: "https://sql01.fabrikam.com/noon.xml", schedule: { full_daily_at: "12:00" }, rpo: 48h }
        services:
          - { name: core, tier: core, priority: 1, backup_sets: [rtc-db], steps: [{ name: start, exec: [/bin/true] }] }
        health:
          probes: [{ name: fe, tcp: "pool01.fabrikam.com:5061", site: primary }]
        policy:
          incident_leads: [alice]
          drill_every: 90d
          review_every: 180d
          last_review: 2026-10-01
          last_drill: 2026-10-20
        """

    let scheduler: Scheduler

    init() throws {
        scheduler = Scheduler(topology: try TopologyLoader.parse(Self.yaml, file: "site.yaml"))
    }

    /// 2026-11-25 at `hour:minute` UTC (New York is UTC-5, Dublin UTC+0 in November).
    static func at(_ hour: Int, _ minute: Int = 0, day: Int = 25) -> Date {
        var components = DateComponents()
        (components.year, components.month, components.day) = (2026, 11, day)
        (components.hour, components.minute) = (hour, minute)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: components)!
    }

    func due(_ now: Date, _ records: [JobRecord] = [], waiting: Bool = false, lastDrill: Date? = nil) -> [String] {
        scheduler.due(
            Scheduler.Inputs(
                now: now, jobs: Dictionary(uniqueKeysWithValues: records.map { ($0.key, $0) }),
                failoverWaiting: waiting,
                lastDrill: lastDrill)
        ).map(\.job.key)
    }

    func done(_ key: String, at date: Date) -> JobRecord {
        JobRecord(key: key, lastStarted: date, lastFinished: date, lastSucceeded: date)
    }

    @Test func firstStartReplicatesAtOnce() {
        // 15:00 UTC = 10:00 New York: outside the primary's window, so no full; the snapshot is due.
        // `noon` has only a daily full: it waits for its time inside the window.
        #expect(due(Self.at(15)) == ["replicate:rtc-db"])
    }

    @Test func snapshotEveryFourHoursAfterTheLastFinished() {
        let last = done("replicate:rtc-db", at: Self.at(12))
        let noon = done("replicate:noon", at: Self.at(12))
        #expect(due(Self.at(15, 59), [last, noon]).isEmpty)
        #expect(due(Self.at(16), [last, noon]) == ["replicate:rtc-db"])
    }

    @Test func setWithOnlyADailyFullHasNoSnapshots() {
        let noonFull = done("full:noon", at: Self.at(1))
        let rtc = done("replicate:rtc-db", at: Self.at(14))
        // 16:00 UTC = 11:00 New York; `noon` has no `every`, so nothing but its full.
        #expect(!due(Self.at(16), [noonFull, rtc]).contains("replicate:noon"))
    }

    @Test func dailyFullAtItsTimeInsideThePrimaryWindow() {
        let snapshot = done("replicate:rtc-db", at: Self.at(5, 30))
        let yesterdaysFull = done("full:rtc-db", at: Self.at(6, 5, day: 24))
        // 05:59 UTC = 00:59 New York: not yet.
        #expect(!due(Self.at(5, 59), [snapshot, yesterdaysFull]).contains("full:rtc-db"))
        // 06:00 UTC = 01:00 New York, inside 20:00-06:00: the full, instead of a snapshot.
        let at0100 = due(Self.at(6), [snapshot, yesterdaysFull])
        #expect(at0100.contains("full:rtc-db") && !at0100.contains("replicate:rtc-db"))
        // Done at 06:10: not again today, even later in the window.
        let todaysFull = done("full:rtc-db", at: Self.at(6, 10))
        #expect(!due(Self.at(10), [snapshot, todaysFull]).contains("full:rtc-db"))
        // Tomorrow 01:00 New York it is due again.
        #expect(due(Self.at(6, day: 26), [todaysFull]).contains("full:rtc-db"))
    }

    @Test func fullAndSnapshotBothDueRunOnlyTheFullAndTheSnapshotCountsFromIt() {
        // First start at 06:30 UTC (01:30 New York, inside the window): nothing has run, so both
        // rtc-db's full and its snapshot are due. One job, the full: the same source read once.
        let first = scheduler.due(Scheduler.Inputs(now: Self.at(6, 30), jobs: [:]))
        #expect(first.filter { $0.job.key.hasSuffix(":rtc-db") }.map(\.job) == [.replicate(set: "rtc-db", full: true)])

        // The full finished at 07:00: the snapshot (every 4h) is due at 11:00, not at once.
        let full = done("full:rtc-db", at: Self.at(7))
        #expect(!due(Self.at(7, 0), [full]).contains("replicate:rtc-db"))
        #expect(!due(Self.at(10, 59), [full]).contains("replicate:rtc-db"))
        #expect(due(Self.at(11), [full]).contains("replicate:rtc-db"))

        // A snapshot before the full (05:30) is superseded by it: not due at 09:30, but at 11:00.
        let earlier = done("replicate:rtc-db", at: Self.at(5, 30))
        #expect(!due(Self.at(9, 30), [earlier, full]).contains("replicate:rtc-db"))
        #expect(due(Self.at(11), [earlier, full]).contains("replicate:rtc-db"))
        // A snapshot that failed or was cut before the full is not retried or continued after it.
        var failed = earlier
        failed.failures = 2
        #expect(!due(Self.at(7, 30), [failed, full]).contains("replicate:rtc-db"))
        let cut = JobRecord(key: "replicate:rtc-db", lastStarted: Self.at(6, 50), lastFinished: Self.at(5, 30))
        #expect(!due(Self.at(7, 30), [cut, full]).contains("replicate:rtc-db"))

        // A snapshot after the full counts from itself.
        let later = done("replicate:rtc-db", at: Self.at(12))
        #expect(!due(Self.at(15, 59), [full, later]).contains("replicate:rtc-db"))
        #expect(due(Self.at(16), [full, later]).contains("replicate:rtc-db"))
    }

    @Test func fullTimeOutsideTheWindowWaitsForTheWindowToOpen() {
        let records = [
            done("replicate:rtc-db", at: Self.at(17)), done("replicate:noon", at: Self.at(17)),
            done("full:noon", at: Self.at(1, day: 24)),
        ]
        // `noon` is at 12:00 New York (17:00 UTC), outside 20:00-06:00: not at 17:30 UTC...
        #expect(!due(Self.at(17, 30), records).contains("full:noon"))
        // ...but at 20:00 New York (01:00 UTC next day) when the window opens.
        #expect(due(Self.at(1, day: 26), records).contains("full:noon"))
    }

    @Test func interruptedJobContinuesFirst() {
        let interrupted = JobRecord(
            key: "replicate:rtc-db", lastStarted: Self.at(14, 30), lastFinished: Self.at(12),
            lastSucceeded: Self.at(12))
        let noon = done("replicate:noon", at: Self.at(14))
        let due = scheduler.due(
            Scheduler.Inputs(now: Self.at(14, 31), jobs: [interrupted.key: interrupted, noon.key: noon]))
        #expect(due.map(\.job.key) == ["replicate:rtc-db"])
        #expect(due.first?.reason.hasPrefix("continues") == true)
    }

    @Test func failuresAreRetriedWithADoublingDelay() {
        func failed(_ failures: Int) -> JobRecord {
            JobRecord(
                key: "replicate:rtc-db", lastStarted: Self.at(14), lastFinished: Self.at(14),
                lastSucceeded: Self.at(9), failures: failures, detail: "connection refused")
        }
        let noon = done("replicate:noon", at: Self.at(14))
        #expect(due(Self.at(14).addingTimeInterval(59), [failed(1), noon]).isEmpty)
        #expect(due(Self.at(14, 1), [failed(1), noon]) == ["replicate:rtc-db"])
        #expect(due(Self.at(14, 3), [failed(3), noon]).isEmpty)
        #expect(due(Self.at(14, 4), [failed(3), noon]) == ["replicate:rtc-db"])
        // Never later than the set's period.
        #expect(due(Self.at(18), [failed(20), noon]) == ["replicate:rtc-db"])
    }

    @Test func waitingFailoverResumesWhenTheSecondaryWindowOpens() {
        let quiet = [
            done("replicate:rtc-db", at: Self.at(21)), done("replicate:noon", at: Self.at(21)),
            done("verify-sample", at: Self.at(21, 59)),
        ]
        // Dublin is UTC in November: closed at 21:59, open at 22:00.
        #expect(!due(Self.at(21, 59), quiet, waiting: true).contains("resume"))
        #expect(due(Self.at(22), quiet, waiting: true).contains("resume"))
        #expect(!due(Self.at(22), quiet, waiting: false).contains("resume"))
        // Still waiting after a resume 30 s ago: not again yet; a minute later, again.
        let resumed = done("resume", at: Self.at(22))
        #expect(!due(Self.at(22).addingTimeInterval(30), quiet + [resumed], waiting: true).contains("resume"))
        #expect(due(Self.at(22, 1), quiet + [resumed], waiting: true).contains("resume"))
    }

    @Test func verifySampleOncePerNightInsideTheSecondaryWindow() {
        let sets = [done("replicate:rtc-db", at: Self.at(21, 30)), done("replicate:noon", at: Self.at(21, 30))]
        #expect(!due(Self.at(21, 30), sets).contains("verify-sample"))
        #expect(due(Self.at(22, 30), sets).contains("verify-sample"))
        let verified = done("verify-sample", at: Self.at(22, 40))
        #expect(!due(Self.at(4, 30, day: 26), sets + [verified]).contains("verify-sample"))
        #expect(!due(Self.at(12, day: 26), sets + [verified]).contains("verify-sample"))
        #expect(due(Self.at(22, 5, day: 26), sets + [verified]).contains("verify-sample"))
    }

    @Test func overdueDrillIsRaisedOnceADay() throws {
        // last_drill 2026-10-20 + 90d = 2027-01-18.
        #expect(!due(Self.at(12)).contains("remind:drill"))
        let february = Self.at(12, day: 25).addingTimeInterval(90 * 86400)
        #expect(due(february).contains("remind:drill"))
        let reminded = done("remind:drill", at: february)
        #expect(!due(february.addingTimeInterval(23 * 3600), [reminded]).contains("remind:drill"))
        #expect(due(february.addingTimeInterval(24 * 3600), [reminded]).contains("remind:drill"))
        // A successful drill recorded in the state store counts too.
        #expect(!due(february, lastDrill: february.addingTimeInterval(-86400)).contains("remind:drill"))
        let reason = scheduler.due(Scheduler.Inputs(now: february, jobs: [:])).first { $0.job == .remind(.drill) }?
            .reason
        #expect(reason == "the last drill was 2026-10-20; one is due every 90d")
    }

    @Test func overdueReviewIsRaised() {
        // last_review 2026-10-01 + 180d = 2027-03-30.
        #expect(!due(Self.at(12)).contains("remind:review"))
        #expect(due(Self.at(12).addingTimeInterval(130 * 86400)).contains("remind:review"))
    }

    @Test func remindersCanBeTurnedOff() throws {
        let yaml = Self.yaml + "\nservice: { reminders: false }\n"
        let quiet = Scheduler(topology: try TopologyLoader.parse(yaml, file: "site.yaml"))
        let due = quiet.due(Scheduler.Inputs(now: Self.at(12).addingTimeInterval(200 * 86400), jobs: [:]))
        #expect(!due.contains { if case .remind = $0.job { true } else { false } })
    }
}

@Suite struct ServiceSectionTests {
    @Test func defaultsWithoutTheSection() throws {
        let topology = try TopologyLoader.parse(SchedulerTests.yaml, file: "site.yaml")
        #expect(topology.service.listen == "127.0.0.1:9470")
        #expect(topology.service.tokenFile == nil)
        #expect(topology.service.verifySample == 0.05)
    }

    @Test func readsEveryKey() throws {
        let yaml =
            SchedulerTests.yaml
            + "\nservice: { listen: \"0.0.0.0:9999\", token_file: keys/token, verify_sample: 10%, remind_every: 12h }\n"
        let service = try TopologyLoader.parse(yaml, file: "site.yaml").service
        #expect(service.listen == "0.0.0.0:9999")
        #expect(service.tokenFile == "keys/token")
        #expect(service.verifySample == 0.1)
        #expect(service.remindEvery == .hours(12))
    }

    @Test func badValuesPointAtTheirLine() throws {
        let yaml = SchedulerTests.yaml + "\nservice:\n  listen: nowhere\n  verify_sample: 150%\n"
        let lines = yaml.split(separator: "\n", omittingEmptySubsequences: false).count
        let error = #expect(throws: TopologyError.self) { try TopologyLoader.parse(yaml, file: "site.yaml") }
        let messages = error?.diagnostics.map { "\($0.line):\($0.message)" } ?? []
        #expect(messages.contains { $0.hasPrefix("\(lines - 2):") && $0.contains("service.listen: 'nowhere'") })
        #expect(messages.contains { $0.hasPrefix("\(lines - 1):") && $0.contains("service.verify_sample: '150%'") })
    }
}
