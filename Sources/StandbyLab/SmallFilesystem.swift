import Foundation

/// A tmpfs of a fixed size mounted on a directory of the lab: a disk that really fills up
/// (ENOSPC from write, SQLITE_FULL from the catalog), for the tests of a full store; or a
/// ramfs, which refuses O_DIRECT. Mounting
/// needs root, as CI runs; without it the test fails with the reason, it is never skipped.
public final class SmallFilesystem: Sendable {
    public let path: String

    private init(path: String) {
        self.path = path
    }

    /// Mounts a tmpfs of `bytes` (rounded up to whole pages) on `path`, created if missing.
    public static func mount(at path: String, bytes: Int) throws -> SmallFilesystem {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try run(
            ["-t", "tmpfs", "-o", "size=\(bytes),mode=0755", "standby-lab", path], what: "mount a tmpfs on \(path)")
        return SmallFilesystem(path: path)
    }

    /// Mounts a ramfs on `path`: a filesystem that refuses O_DIRECT, for the tests of the
    /// buffered path of the store's pack writes. It has no size limit; keep what goes there small.
    public static func mountWithoutDirectIO(at path: String) throws -> SmallFilesystem {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try run(["-t", "ramfs", "-o", "mode=0755", "standby-lab", path], what: "mount a ramfs on \(path)")
        return SmallFilesystem(path: path)
    }

    /// Grows (or shrinks) the filesystem in place, keeping its files: the operator freeing space.
    public func resize(bytes: Int) throws {
        try Self.run(["-o", "remount,size=\(bytes)", path], what: "resize the tmpfs on \(path)")
    }

    public func unmount() {
        try? Self.run(["-l", path], program: "umount", what: "unmount \(path)")
    }

    private static func run(_ arguments: [String], program: String = "mount", what: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Programs.locate(program, package: "mount"))
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw LabError(
                .setupFailed,
                "cannot \(what) (the full-disk tests need root): \(text.trimmingCharacters(in: .whitespacesAndNewlines))"
            )
        }
    }
}
