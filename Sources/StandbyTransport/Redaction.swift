import Foundation

/// Credentials never reach a log line or an error message: every URL shown to a person goes
/// through `redacted`, which keeps the user name (useful in "login denied for root@host") and
/// replaces the password with `***`.
public enum Redaction {
    public static func redacted(_ url: URL) -> String { redacted(url.absoluteString) }

    public static func redacted(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let authorityStart = schemeEnd.upperBound
        let rest = url[authorityStart...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? url.endIndex
        let authority = url[authorityStart..<authorityEnd]
        guard let at = authority.lastIndex(of: "@") else { return url }
        let userinfo = authority[authority.startIndex..<at]
        let user = userinfo.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
        let shown = userinfo.contains(":") ? "\(user):***" : user
        return String(url[..<authorityStart]) + shown + String(url[at..<url.endIndex])
    }

    /// Removes `secret` from a message (libcurl's error text may echo parts of a URL).
    static func scrub(_ text: String, secrets: [String]) -> String {
        var result = text
        for secret in secrets where !secret.isEmpty {
            result = result.replacingOccurrences(of: secret, with: "***")
        }
        return result
    }
}
