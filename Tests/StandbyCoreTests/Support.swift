import Foundation
import Testing

@testable import StandbyCore

extension Tag {
    @Tag static var server: Self
}

/// The fixtures shipped with this test target.
enum Fixture {
    static func path(_ name: String) -> String {
        guard let url = Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil) else {
            fatalError("fixture \(name) is missing")
        }
        return url.path
    }

    static func text(_ name: String) -> String {
        (try? String(contentsOfFile: path(name), encoding: .utf8)) ?? ""
    }

    /// The minimal topology with `replacements` applied, each of which must match once, so a
    /// test can never silently test the unmodified file.
    static func minimal(_ replacements: [(String, String)] = [], file: String = "site.yaml") throws -> String {
        var text = Self.text("minimal/site.yaml")
        for (old, new) in replacements {
            #expect(text.components(separatedBy: old).count == 2, "fixture text '\(old)' must occur exactly once")
            text = text.replacingOccurrences(of: old, with: new)
        }
        return text
    }

    static let now = ISO8601DateFormatter().date(from: "2026-11-25T12:00:00Z") ?? Date()
}

/// Parses a topology text; the errors, or the topology.
func load(_ text: String, environment: [String: String] = [:]) -> Result<Topology, TopologyError> {
    do {
        return .success(try TopologyLoader.parse(text, file: "site.yaml", environment: environment))
    } catch let error as TopologyError {
        return .failure(error)
    } catch {
        Issue.record("unexpected error \(error)")
        return .failure(TopologyError(file: "site.yaml", diagnostics: []))
    }
}

func diagnostics(_ text: String, environment: [String: String] = [:]) -> [Diagnostic] {
    if case .failure(let error) = load(text, environment: environment) { return error.diagnostics }
    return []
}

func topology(_ text: String) throws -> Topology {
    try TopologyLoader.parse(text, file: "site.yaml")
}
