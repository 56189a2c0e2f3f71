import Foundation

/// A daily time window in a site's local time, like `22:00-05:00`. A window whose end is not
/// after its start crosses midnight.
public struct TimeWindow: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Minutes after local midnight.
    public var start: Int
    public var end: Int

    public init(start: Int, end: Int) {
        self.start = start
        self.end = end
    }

    public var crossesMidnight: Bool { end <= start }

    public var description: String { "\(Self.clock(start))-\(Self.clock(end))" }

    static func clock(_ minutes: Int) -> String {
        String(format: "%02d:%02d", minutes / 60, minutes % 60)
    }

    /// Parses `HH:MM`; nil unless 00:00...23:59 (24:00 is accepted as an end of day).
    public static func parseClock(_ text: String) -> Int? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2,
            let h = Int(parts[0]), let m = Int(parts[1]), (0...24).contains(h), (0...59).contains(m),
            h < 24 || m == 0
        else { return nil }
        return h * 60 + m
    }

    public static func parse(_ text: String) -> TimeWindow? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2,
            let start = parseClock(parts[0].trimmingCharacters(in: .whitespaces)),
            let end = parseClock(parts[1].trimmingCharacters(in: .whitespaces)),
            start != end, start < 24 * 60
        else { return nil }
        return TimeWindow(start: start, end: end)
    }

    /// Whether `minute` (after local midnight) falls inside the window.
    public func contains(minuteOfDay minute: Int) -> Bool {
        crossesMidnight ? (minute >= start || minute < end) : (minute >= start && minute < end)
    }

    /// Whether `date` falls inside the window in `timeZone`.
    public func contains(_ date: Date, in timeZone: TimeZone) -> Bool {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.hour, .minute], from: date)
        return contains(minuteOfDay: (parts.hour ?? 0) * 60 + (parts.minute ?? 0))
    }

    /// The next moment at or after `date` when the window is open (`date` itself when it already is),
    /// computed in `timeZone` so that daylight-saving changes land where the site's clocks put them.
    public func nextOpening(after date: Date, in timeZone: TimeZone) -> Date {
        if contains(date, in: timeZone) { return date }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let day = calendar.startOfDay(for: date)
        for offset in 0...2 {
            guard let base = calendar.date(byAdding: .day, value: offset, to: day),
                let opening = calendar.date(
                    bySettingHour: start / 60, minute: start % 60, second: 0, of: base,
                    matchingPolicy: .nextTime)
            else { continue }
            if opening > date { return opening }
        }
        return date.addingTimeInterval(86400)
    }

    /// When the window that holds `date` closes, in `timeZone`; nil when `date` is outside it.
    public func closing(after date: Date, in timeZone: TimeZone) -> Date? {
        guard contains(date, in: timeZone) else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let day = calendar.startOfDay(for: date)
        for offset in 0...2 {
            // An end of 24:00 is the next day's midnight.
            guard let base = calendar.date(byAdding: .day, value: offset + end / (24 * 60), to: day),
                let closing = calendar.date(
                    bySettingHour: (end % (24 * 60)) / 60, minute: end % 60, second: 0, of: base,
                    matchingPolicy: .nextTime)
            else { continue }
            if closing > date { return closing }
        }
        return nil
    }
}

extension Array where Element == TimeWindow {
    public func contains(_ date: Date, in timeZone: TimeZone) -> Bool {
        contains { $0.contains(date, in: timeZone) }
    }

    /// The soonest opening of any window at or after `date`; nil when there are no windows.
    public func nextOpening(after date: Date, in timeZone: TimeZone) -> Date? {
        map { $0.nextOpening(after: date, in: timeZone) }.min()
    }

    /// When the open window that holds `date` closes (the latest, when windows overlap); nil when
    /// no window is open.
    public func closing(after date: Date, in timeZone: TimeZone) -> Date? {
        compactMap { $0.closing(after: date, in: timeZone) }.max()
    }
}
