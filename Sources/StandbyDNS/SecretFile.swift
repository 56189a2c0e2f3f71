import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The one check of a file that holds a secret (a TSIG key file, a keytab, a password file): it
/// exists, is a regular file, and no one but its owner can read it, since its holder can rewrite
/// the SIP records of the whole deployment.
enum SecretFile {
    /// `what` names the file in the messages: "key file", "the keytab".
    static func check(_ path: String, what: String) throws(DNSError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw DNSError(.keyFile, "cannot read \(what) \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw DNSError(.keyFile, "\(what) \(path) is not a regular file")
        }
        let mode = Int(info.st_mode & 0o7777)
        if mode & 0o077 != 0 {
            throw DNSError(
                .keyPermissions,
                "\(what) \(path) has mode \(String(format: "%04o", mode)): it is readable by group or others; "
                    + "run chmod 600 \(path)")
        }
    }
}
