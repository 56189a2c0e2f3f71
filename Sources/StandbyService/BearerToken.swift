import Foundation
import StandbyCore

/// The endpoint's bearer token, read from `service.token_file`. Like the TSIG key, a token file
/// readable by group or others is refused: it would let any local user read the status.
public struct BearerToken: Sendable, Equatable {
    public var value: String

    public init(value: String) { self.value = value }

    public static func load(path: String) throws -> BearerToken {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
        } catch {
            throw ServiceError(.token, "\(path): cannot read the service token file: \(error.localizedDescription)")
        }
        let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? 0o777
        if mode & 0o077 != 0 {
            throw ServiceError(
                .token,
                "\(path): the service token file is readable by group or others (mode \(String(mode & 0o777, radix: 8))); chmod 600 it"
            )
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ServiceError(.token, "\(path): cannot read the service token file")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty, !token.contains(where: \.isWhitespace) else {
            throw ServiceError(.token, "\(path): the service token file must hold one token on one line")
        }
        return BearerToken(value: token)
    }

    /// Compares in time independent of where the first difference is.
    func matches(_ presented: String) -> Bool {
        let a = Array(value.utf8)
        let b = Array(presented.utf8)
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
