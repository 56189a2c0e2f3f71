import Foundation

/// The `{{name}}` variables a step's arguments, URL, body and headers may use. Substitution is
/// plain text replacement into each argument: values never pass through a shell.
public struct StepVariables: Sendable {
    public var values: [String: String]

    public init(values: [String: String]) { self.values = values }

    public init(topology: Topology, runId: String, stateDirectory: String, restored: [String: String]) {
        var values = [
            "deployment": topology.deployment,
            "primary_pool": topology.primary.pool,
            "secondary_pool": topology.secondary.pool,
            "run": runId,
            "state": stateDirectory,
            // `true` during `standby drill`, so a step can tell a rehearsal from the real thing.
            "drill": "false",
        ]
        for (set, path) in restored { values["restored.\(set)"] = path }
        self.values = values
    }

    /// `text` with every `{{name}}` replaced; an unknown name is an error naming it (a restored
    /// set not restored yet by this run, a typo) rather than an empty string passed to a program.
    public func substitute(_ text: String, in what: String) throws -> String {
        var out = ""
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            out += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw FailoverError(.stepFailed, "\(what): '{{' without '}}' in '\(text)'")
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard let value = values[name] else {
                let hint =
                    name.hasPrefix("restored.")
                    ? "no earlier step of this run restored \(name.dropFirst("restored.".count))"
                    : "known: \(values.keys.sorted().joined(separator: ", "))"
                throw FailoverError(.stepFailed, "\(what): unknown variable {{\(name)}}; \(hint)")
            }
            out += value
            rest = rest[close.upperBound...]
        }
        return out + rest
    }
}
