import Foundation

/// A fresh temporary directory for one test or one demo run, removed by `remove()`.
public struct LabDirectory: Sendable {
    public let path: String

    public init(prefix: String = "standby-lab") throws {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? NSTemporaryDirectory()
        let template = (base as NSString).appendingPathComponent("\(prefix).XXXXXX")
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else {
            throw LabError(.setupFailed, "cannot create a temporary directory under \(base)")
        }
        path = String(cString: made)
    }

    /// An existing directory (created if missing), kept by `remove()`'s caller's choice.
    public init(existing path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        self.path = path
    }

    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// Creates (if needed) and returns a subdirectory.
    public func directory(_ name: String) throws -> String {
        let sub = file(name)
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
        return sub
    }

    public func write(_ name: String, _ text: String, mode: Int = 0o644) throws {
        let target = file(name)
        try FileManager.default.createDirectory(
            atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: target))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: target)
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
