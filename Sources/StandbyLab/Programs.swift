import Foundation

/// Finds the server programs the lab runs. Debian puts daemons in /usr/sbin, which is not on
/// every user's PATH, so the sbin directories are always searched too.
public enum Programs {
    static let extraDirectories = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/lib/openssh"]

    /// The absolute path of `name`, or a `missingProgram` error naming the Debian package to install.
    public static func locate(_ name: String, package: String) throws -> String {
        if name.hasPrefix("/") {
            if FileManager.default.isExecutableFile(atPath: name) { return name }
            throw LabError(.missingProgram, "\(name) is not installed (apt-get install \(package))")
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":").map(String.init) + extraDirectories {
            let candidate = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw LabError(.missingProgram, "\(name) is not installed (apt-get install \(package))")
    }
}
