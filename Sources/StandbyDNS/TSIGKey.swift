import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A TSIG algorithm that libldns 1.8.3 signs and verifies correctly. hmac-sha384 is left out on
/// purpose: ldns 1.8.3 misspells its name internally and can never sign with it.
public enum TSIGAlgorithm: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case hmacMD5 = "hmac-md5"
    case hmacSHA1 = "hmac-sha1"
    case hmacSHA256 = "hmac-sha256"
    case hmacSHA512 = "hmac-sha512"

    /// hmac-md5 and hmac-sha1 still work but are weak; `standby check` warns about them.
    public var isWeak: Bool { self == .hmacMD5 || self == .hmacSHA1 }

    public var description: String { rawValue }

    /// The algorithm's domain name on the wire, spelled the way ldns looks it up.
    var ldnsName: String {
        switch self {
        case .hmacMD5: "hmac-md5.sig-alg.reg.int."
        case .hmacSHA1: "hmac-sha1."
        case .hmacSHA256: "hmac-sha256."
        case .hmacSHA512: "hmac-sha512."
        }
    }

    /// Accepts BIND's spellings ("hmac-sha256", "HMAC-SHA256", "hmac-md5.sig-alg.reg.int").
    init?(bindName: String) {
        var name = bindName.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        if name == "hmac-md5.sig-alg.reg.int" { name = "hmac-md5" }
        self.init(rawValue: name)
    }
}

/// A TSIG key in BIND's key-file format. The secret stays inside this value: `description`,
/// `debugDescription` and the mirror (`dump`, `print` of a containing value) all redact it.
public struct TSIGKey: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// The key's name as the server knows it, without a trailing dot.
    public let name: String
    public let algorithm: TSIGAlgorithm
    /// Base64, exactly as in the key file. Internal: only the signer reads it.
    let secret: String

    /// Where the key came from (a file path), for messages; nil for keys built in code.
    public let source: String?

    public init(name: String, algorithm: TSIGAlgorithm, secret: String, source: String? = nil) throws(DNSError) {
        let where_ = source.map { " in \($0)" } ?? ""
        var trimmedName = name.trimmingCharacters(in: .whitespaces)
        if trimmedName.hasSuffix(".") { trimmedName.removeLast() }
        guard !trimmedName.isEmpty else { throw DNSError(.keyFile, "the TSIG key\(where_) has no name") }
        guard let bytes = Data(base64Encoded: secret), !bytes.isEmpty else {
            throw DNSError(.keyFile, "the secret of TSIG key \(trimmedName)\(where_) is not valid base64")
        }
        self.name = trimmedName
        self.algorithm = algorithm
        self.secret = secret
        self.source = source
    }

    public var isWeak: Bool { algorithm.isWeak }

    public var description: String { "TSIG key \(name) (\(algorithm), secret redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["name": name, "algorithm": algorithm, "source": source as Any], displayStyle: .struct)
    }

    /// Loads the one key of a BIND key file (as `tsig-keygen` writes it). With `name`, picks that key
    /// from a file holding several. A file readable by group or others is refused: the key lets its
    /// holder rewrite the SIP records of the whole deployment.
    public static func load(path: String, name: String? = nil) throws(DNSError) -> TSIGKey {
        try SecretFile.check(path, what: "key file")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DNSError(.keyFile, "cannot read key file \(path)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw DNSError(.keyFile, "key file \(path) is not UTF-8 text")
        }
        let keys = try parse(text, source: path)
        if let name {
            let wanted = name.hasSuffix(".") ? String(name.dropLast()) : name
            guard let key = keys.first(where: { $0.name.lowercased() == wanted.lowercased() }) else {
                throw DNSError(.keyFile, "key file \(path) has no key named \(wanted)")
            }
            return key
        }
        guard keys.count == 1, let key = keys.first else {
            throw DNSError(
                .keyFile,
                "key file \(path) holds \(keys.count) keys (\(keys.map(\.name).joined(separator: ", "))); name the one to use"
            )
        }
        return key
    }

    /// Parses every `key "name" { algorithm ...; secret "..."; };` clause of a BIND configuration
    /// fragment. Comments (`//`, `#`, `/* */`) are skipped. Errors name `source` and the line, and
    /// never quote the secret.
    public static func parse(_ text: String, source: String) throws(DNSError) -> [TSIGKey] {
        var tokens = try KeyFileTokenizer(text: text, source: source).tokens()
        var keys: [TSIGKey] = []
        tokens.reverse()
        func next() -> KeyFileTokenizer.Token? { tokens.popLast() }
        func expect(_ word: String, after: String, line: Int) throws(DNSError) {
            guard let token = next(), token.text == word, !token.quoted else {
                throw DNSError(.keyFile, "\(source):\(line): expected '\(word)' after \(after)")
            }
        }
        while let token = next() {
            guard !token.quoted, token.text == "key" else {
                throw DNSError(
                    .keyFile, "\(source):\(token.line): expected a key clause, found '\(token.safeText)'")
            }
            guard let nameToken = next(), nameToken.text != "{" else {
                throw DNSError(.keyFile, "\(source):\(token.line): the key has no name")
            }
            try expect("{", after: "the key name", line: nameToken.line)
            var algorithmName: String?
            var secret: String?
            while true {
                guard let field = next() else {
                    throw DNSError(.keyFile, "\(source): key \(nameToken.text) is not closed with '};'")
                }
                if field.text == "}" && !field.quoted {
                    if let semicolon = tokens.last, semicolon.text == ";", !semicolon.quoted { _ = next() }
                    break
                }
                guard let value = next() else {
                    throw DNSError(.keyFile, "\(source):\(field.line): '\(field.safeText)' has no value")
                }
                try expect(";", after: field.text, line: value.line)
                switch field.text.lowercased() {
                case "algorithm": algorithmName = value.text
                case "secret": secret = value.text
                default:
                    throw DNSError(
                        .keyFile,
                        "\(source):\(field.line): unknown statement '\(field.safeText)' in key \(nameToken.text)")
                }
            }
            guard let algorithmName else {
                throw DNSError(.keyFile, "\(source): key \(nameToken.text) has no algorithm")
            }
            guard let algorithm = TSIGAlgorithm(bindName: algorithmName) else {
                let supported = TSIGAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")
                throw DNSError(
                    .keyFile,
                    "\(source): key \(nameToken.text) uses \(algorithmName), which libldns 1.8.3 cannot sign with "
                        + "(use one of \(supported); hmac-sha256 or hmac-sha512 preferred)")
            }
            guard let secret else { throw DNSError(.keyFile, "\(source): key \(nameToken.text) has no secret") }
            keys.append(try TSIGKey(name: nameToken.text, algorithm: algorithm, secret: secret, source: source))
        }
        guard !keys.isEmpty else { throw DNSError(.keyFile, "\(source) holds no key clause") }
        return keys
    }
}

/// Splits a BIND configuration fragment into words, quoted strings and the punctuation `{ } ;`.
struct KeyFileTokenizer {
    struct Token {
        var text: String
        var quoted: Bool
        var line: Int
        /// The token for an error message: quoted strings may be secrets, so they are never shown.
        var safeText: String { quoted ? "\"…\"" : text }
    }

    let text: String
    let source: String

    func tokens() throws(DNSError) -> [Token] {
        var result: [Token] = []
        let scalars = Array(text.unicodeScalars)
        var index = 0
        var line = 1
        var word = ""
        func flush() {
            if !word.isEmpty {
                result.append(Token(text: word, quoted: false, line: line))
                word = ""
            }
        }
        while index < scalars.count {
            let c = scalars[index]
            let next: Unicode.Scalar? = index + 1 < scalars.count ? scalars[index + 1] : nil
            switch c {
            case "\n":
                flush()
                line += 1
                index += 1
            case " ", "\t", "\r":
                flush()
                index += 1
            case "#":
                flush()
                while index < scalars.count && scalars[index] != "\n" { index += 1 }
            case "/" where next == "/":
                flush()
                while index < scalars.count && scalars[index] != "\n" { index += 1 }
            case "/" where next == "*":
                flush()
                index += 2
                while index < scalars.count
                    && !(scalars[index] == "*" && index + 1 < scalars.count && scalars[index + 1] == "/")
                {
                    if scalars[index] == "\n" { line += 1 }
                    index += 1
                }
                guard index < scalars.count else {
                    throw DNSError(.keyFile, "\(source):\(line): a /* comment is not closed")
                }
                index += 2
            case "{", "}", ";":
                flush()
                result.append(Token(text: String(c), quoted: false, line: line))
                index += 1
            case "\"":
                flush()
                let start = line
                index += 1
                var quoted = ""
                while index < scalars.count && scalars[index] != "\"" {
                    if scalars[index] == "\n" { line += 1 }
                    quoted.unicodeScalars.append(scalars[index])
                    index += 1
                }
                guard index < scalars.count else {
                    throw DNSError(.keyFile, "\(source):\(start): a quoted string is not closed")
                }
                index += 1
                result.append(Token(text: quoted, quoted: true, line: start))
            default:
                word.unicodeScalars.append(c)
                index += 1
            }
        }
        flush()
        return result
    }
}
