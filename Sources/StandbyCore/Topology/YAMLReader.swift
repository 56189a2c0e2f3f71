import Foundation
import Yams

/// Walks a composed YAML tree and collects every problem with its position, so that one run of
/// `standby check` shows all of a file's errors at once instead of the first.
final class YAMLReader {
    let file: String
    private(set) var diagnostics: [Diagnostic] = []
    private let environment: [String: String]

    init(file: String, environment: [String: String]) {
        self.file = file
        self.environment = environment
    }

    func error(at location: SourceLocation, _ message: String) {
        diagnostics.append(Diagnostic(file: file, line: location.line, column: location.column, message: message))
    }

    func error(_ node: Node?, _ message: String) {
        error(at: Self.location(node), message)
    }

    static func location(_ node: Node?) -> SourceLocation {
        guard let mark = node?.mark else { return .unknown }
        return SourceLocation(line: mark.line, column: mark.column)
    }

    /// Reads a mapping and reports every key not in `allowed`.
    func mapping(_ node: Node?, _ what: String, allowed: [String]) -> Fields? {
        guard let node else { return nil }
        guard case .mapping(let mapping) = node else {
            error(node, "\(what) must be a mapping with keys \(allowed.joined(separator: ", "))")
            return nil
        }
        var values: [String: (key: Node, value: Node)] = [:]
        for (key, value) in mapping {
            guard let name = key.scalar?.string else {
                error(key, "\(what): keys must be plain strings")
                continue
            }
            if !allowed.contains(name) {
                let hint = allowed.first { $0.levenshtein(to: name) <= 2 }.map { " (did you mean '\($0)'?)" } ?? ""
                error(
                    key, "unknown key '\(name)' in \(what)\(hint); expected one of: \(allowed.joined(separator: ", "))")
                continue
            }
            values[name] = (key, value)
        }
        return Fields(reader: self, node: node, what: what, values: values)
    }

    func sequence(_ node: Node?, _ what: String) -> [Node] {
        guard let node else { return [] }
        if case .sequence(let items) = node { return Array(items) }
        error(node, "\(what) must be a list")
        return []
    }

    /// A scalar's text with `${VAR}` and `${VAR:-default}` expanded from the environment, so that
    /// secrets' paths and lab ports can come from outside the file.
    func text(_ node: Node, _ what: String) -> String? {
        guard case .scalar(let scalar) = node else {
            let shape = if case .mapping = node { "mapping" } else { "list" }
            error(node, "\(what) must be a single value, not a \(shape)")
            return nil
        }
        // A plain `null`, `~` or nothing after the colon is YAML's null, not the text "null".
        if Self.isNull(node) {
            error(
                node,
                "\(what) has no value (null); write a value, quote it (\"null\") to mean the word, or leave the key out"
            )
            return nil
        }
        guard let text = expand(scalar.string, node: node, what: what) else { return nil }
        if let problem = Self.hiddenCharacter(in: text) {
            error(node, "\(what) \(problem)")
            return nil
        }
        return text
    }

    /// Reports a line break or a tab in a one-line value; false when there is one.
    func checkLine(_ text: String, _ node: Node?, _ what: String) -> Bool {
        guard let bad = text.unicodeScalars.first(where: { $0 == "\n" || $0 == "\t" }) else { return true }
        let code = "U+" + String(bad.value, radix: 16, uppercase: true).leftPadded(to: 4)
        error(node, "\(what) holds the control character \(code); a name is one line of printable text")
        return false
    }

    static func isNull(_ node: Node) -> Bool { node.tag.rawValue == Tag.Name.null.rawValue }

    /// "a number" or "a boolean" when YAML reads the scalar as one rather than as text.
    static func nonTextKind(_ node: Node) -> String? {
        switch node.tag.rawValue {
        case Tag.Name.int.rawValue, Tag.Name.float.rawValue: "a number"
        case Tag.Name.bool.rawValue: "a boolean"
        default: nil
        }
    }

    /// A character that makes a value display as something other than what it is: a control
    /// character (a tab or a line break only where text may span lines), or a bidirectional
    /// control, which reorders what a terminal or an editor shows. Nil when there is none.
    static func hiddenCharacter(in text: String) -> String? {
        for scalar in text.unicodeScalars {
            let code = "U+" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 4)
            if (0x202A...0x202E).contains(scalar.value) || (0x2066...0x2069).contains(scalar.value)
                || [0x200E, 0x200F, 0x061C].contains(scalar.value)
            {
                return
                    "holds the bidirectional control character \(code), which makes text show in another order than it is read; remove it"
            }
            if scalar.properties.generalCategory == .control && scalar != "\n" && scalar != "\t" {
                return "holds the control character \(code); write printable text"
            }
        }
        return nil
    }

    private func expand(_ raw: String, node: Node, what: String) -> String? {
        guard raw.contains("${") else { return raw }
        var out = ""
        var rest = Substring(raw)
        while let open = rest.range(of: "${") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                error(node, "\(what): unterminated ${ in '\(raw)'")
                return nil
            }
            let body = rest[open.upperBound..<close]
            let parts = body.components(separatedBy: ":-")
            if let value = environment[parts[0]], !value.isEmpty {
                out += value
            } else if parts.count > 1 {
                out += parts.dropFirst().joined(separator: ":-")
            } else {
                error(
                    node,
                    "\(what): environment variable \(parts[0]) is not set (write ${\(parts[0]):-default} for a default)"
                )
                return nil
            }
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }
}

/// The keys of one mapping, with typed accessors that report a positioned error when a value
/// is missing or of the wrong type. Accessors return nil after reporting.
struct Fields {
    let reader: YAMLReader
    let node: Node
    let what: String
    let values: [String: (key: Node, value: Node)]

    var location: SourceLocation { YAMLReader.location(node) }

    func has(_ key: String) -> Bool { values[key] != nil }
    func node(_ key: String) -> Node? { values[key]?.value }
    func location(of key: String) -> SourceLocation { YAMLReader.location(values[key]?.value ?? node) }

    func missing(_ key: String, _ expected: String) {
        reader.error(node, "\(what) is missing '\(key)' (\(expected))")
    }

    func string(_ key: String, required: Bool = false, expected: String = "a string") -> String? {
        guard let value = node(key) else {
            if required { missing(key, expected) }
            return nil
        }
        guard let text = reader.text(value, "\(what).\(key)") else { return nil }
        if required && text.isEmpty {
            reader.error(value, "\(what).\(key) must not be empty (\(expected))")
            return nil
        }
        return text
    }

    /// A domain name (a pool's FQDN, the SIP domain, a zone): text in DNS name syntax whose last
    /// label is not a number, so that `pool: 42` or an address is not taken for a name.
    func domainName(_ key: String, required: Bool = false, expected: String) -> String? {
        guard let text = string(key, required: required, expected: expected), let value = node(key) else { return nil }
        if let kind = YAMLReader.nonTextKind(value) {
            reader.error(value, "\(what).\(key) is \(kind) (\(text)), not a name; expected \(expected)")
            return nil
        }
        guard text.isDomainName else {
            reader.error(value, "\(what).\(key): '\(text)' is not a domain name; expected \(expected)")
            return nil
        }
        return text
    }

    /// A name shown on one line of a report (a site, a host, a probe): text without line breaks
    /// or tabs, which could make it pass for another line of output.
    func name(_ key: String, required: Bool = false, expected: String) -> String? {
        guard let text = string(key, required: required, expected: expected) else { return nil }
        guard reader.checkLine(text, node(key), "\(what).\(key)") else { return nil }
        return text
    }

    func int(_ key: String, required: Bool = false, range: ClosedRange<Int>? = nil) -> Int? {
        guard let value = node(key) else {
            if required { missing(key, "a whole number") }
            return nil
        }
        guard let text = reader.text(value, "\(what).\(key)") else { return nil }
        guard let number = Int(text) else {
            reader.error(value, "\(what).\(key) must be a whole number, not '\(text)'")
            return nil
        }
        if let range, !range.contains(number) {
            reader.error(
                value, "\(what).\(key) must be between \(range.lowerBound) and \(range.upperBound), not \(number)")
            return nil
        }
        return number
    }

    func bool(_ key: String) -> Bool? {
        guard let value = node(key), let text = reader.text(value, "\(what).\(key)") else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            reader.error(value, "\(what).\(key) must be true or false, not '\(text)'")
            return nil
        }
    }

    func span(_ key: String, required: Bool = false) -> TimeSpan? {
        guard let value = node(key) else {
            if required { missing(key, "a duration like 30m, 4h or 90d") }
            return nil
        }
        guard let text = reader.text(value, "\(what).\(key)") else { return nil }
        guard let span = TimeSpan.parse(text), span.milliseconds > 0 else {
            reader.error(
                value,
                "\(what).\(key): '\(text)' is not a duration; expected a number with a unit (ms, s, m, h, d, w), like 30m, 4h, 1h30m or 90d"
            )
            return nil
        }
        return span
    }

    func clock(_ key: String) -> Int? {
        guard let value = node(key), let text = reader.text(value, "\(what).\(key)") else { return nil }
        guard let minutes = TimeWindow.parseClock(text), minutes < 24 * 60 else {
            reader.error(
                value, "\(what).\(key): '\(text)' is not a time of day; expected HH:MM between 00:00 and 23:59")
            return nil
        }
        return minutes
    }

    func date(_ key: String) -> Date? {
        guard let value = node(key), let text = reader.text(value, "\(what).\(key)") else { return nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        guard text.count == 10, let date = formatter.date(from: text) else {
            reader.error(value, "\(what).\(key): '\(text)' is not a date; expected YYYY-MM-DD")
            return nil
        }
        return date
    }

    /// A list of strings; a single string is accepted as a list of one.
    func strings(_ key: String, required: Bool = false) -> [String]? {
        guard let value = node(key) else {
            if required { missing(key, "a list of strings") }
            return nil
        }
        if case .scalar = value { return reader.text(value, "\(what).\(key)").map { [$0] } }
        let items = reader.sequence(value, "\(what).\(key)")
        let texts = items.enumerated().compactMap { reader.text($1, "\(what).\(key)[\($0)]") }
        return texts.count == items.count ? texts : nil
    }

    func stringMap(_ key: String) -> [String: String]? {
        guard let value = node(key) else { return nil }
        guard case .mapping(let mapping) = value else {
            reader.error(value, "\(what).\(key) must be a mapping of names to values")
            return nil
        }
        var out: [String: String] = [:]
        for (k, v) in mapping {
            guard let name = k.scalar?.string, let text = reader.text(v, "\(what).\(key).\(k.scalar?.string ?? "?")")
            else { continue }
            out[name] = text
        }
        return out
    }

    func oneOf<T: RawRepresentable>(_ key: String, _ type: T.Type, required: Bool = false) -> T?
    where T.RawValue == String, T: CaseIterable {
        let choices = T.allCases.map(\.rawValue).joined(separator: ", ")
        guard let text = string(key, required: required, expected: "one of \(choices)") else { return nil }
        guard let value = T(rawValue: text) else {
            reader.error(node(key), "\(what).\(key): '\(text)' is not one of \(choices)")
            return nil
        }
        return value
    }
}

extension String {
    /// Labels of letters, digits, '-' and '_' (1 to 63 each, 253 in all, a trailing dot allowed),
    /// the last one not all digits.
    var isDomainName: Bool {
        let name = hasSuffix(".") ? String(dropLast()) : self
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        guard !name.isEmpty, name.utf8.count <= 253, let last = labels.last, !last.allSatisfy(\.isNumber) else {
            return false
        }
        return labels.allSatisfy { label in
            (1...63).contains(label.utf8.count) && !label.hasPrefix("-")
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        }
    }

    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }

    /// Edit distance, for "did you mean" hints on misspelt keys.
    func levenshtein(to other: String) -> Int {
        let a = Array(self)
        let b = Array(other)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = Swift.min(
                    previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
