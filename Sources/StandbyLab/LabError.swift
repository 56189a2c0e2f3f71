/// What went wrong while starting or stopping a lab server. A missing server program is an
/// error, never a reason to skip: CI installs every server, and a test that silently skipped
/// would prove nothing.
public struct LabError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case missingProgram
        case spawnFailed
        case notReady
        case noFreePort
        case setupFailed
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "lab: \(message)" }
}
