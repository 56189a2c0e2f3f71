/// A length of time written the way operators write it: `90d`, `4h`, `30m`, `10s`, `1h30m`,
/// `500ms`, `2w`. Stored as whole milliseconds.
public struct TimeSpan: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }
    public init(seconds: Int64) { self.milliseconds = seconds * 1000 }
    public static func minutes(_ n: Int64) -> TimeSpan { TimeSpan(seconds: n * 60) }
    public static func hours(_ n: Int64) -> TimeSpan { TimeSpan(seconds: n * 3600) }
    public static func days(_ n: Int64) -> TimeSpan { TimeSpan(seconds: n * 86400) }

    public var seconds: Double { Double(milliseconds) / 1000 }
    public var duration: Duration { .milliseconds(milliseconds) }

    public static func < (a: TimeSpan, b: TimeSpan) -> Bool { a.milliseconds < b.milliseconds }

    private static let units: [(suffix: String, ms: Int64)] = [
        ("ms", 1), ("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
    ]

    /// Parses `1h30m`-style text; nil when it is not of that form.
    public static func parse(_ text: String) -> TimeSpan? {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        guard !rest.isEmpty else { return nil }
        var total: Int64 = 0
        while !rest.isEmpty {
            let digits = rest.prefix(while: \.isNumber)
            guard !digits.isEmpty, let value = Int64(digits) else { return nil }
            rest = rest.dropFirst(digits.count)
            guard let unit = units.first(where: { rest.hasPrefix($0.suffix) }) else { return nil }
            rest = rest.dropFirst(unit.suffix.count)
            let (product, overflow) = value.multipliedReportingOverflow(by: unit.ms)
            guard !overflow else { return nil }
            total += product
        }
        return TimeSpan(milliseconds: total)
    }

    /// The shortest exact rendering: `1h30m`, `90d`, `0s`.
    public var description: String {
        if milliseconds == 0 { return "0s" }
        var rest = milliseconds
        var text = ""
        for (suffix, ms) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]
        where rest >= ms {
            text += "\(rest / ms)\(suffix)"
            rest %= ms
        }
        return text
    }

    /// A rounded human rendering for ages: `3h12m`, `2d4h`, `45s`.
    public var roughDescription: String {
        let s = milliseconds / 1000
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60 > 0 ? "\(s % 60)s" : "")" }
        if s < 86400 { return "\(s / 3600)h\((s % 3600) / 60 > 0 ? "\((s % 3600) / 60)m" : "")" }
        return "\(s / 86400)d\((s % 86400) / 3600 > 0 ? "\((s % 86400) / 3600)h" : "")"
    }
}
