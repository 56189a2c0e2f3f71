/// How smb:// sources are read (libsmbclient): the lowest dialect accepted, whether the session
/// is encrypted, and whether the login is NTLMv2 (the source credentials) or Kerberos (a service
/// account's keytab or ticket cache). Signing is always required.
public struct SMBOptions: Sendable, Hashable {
    /// SMB dialects in Samba's names, oldest first.
    public enum Dialect: String, Sendable, Hashable, CaseIterable, Comparable {
        /// SMB1 ("NT LM 0.12"): off by default on Windows Server 2019 and later, and here.
        case nt1 = "NT1"
        case smb2_02 = "SMB2_02"
        case smb2_10 = "SMB2_10"
        case smb3_00 = "SMB3_00"
        case smb3_02 = "SMB3_02"
        case smb3_11 = "SMB3_11"

        /// Accepts Samba's names and the short forms `SMB1`, `SMB2` (2.02), `SMB3` (3.00).
        public init?(parsing text: String) {
            switch text.uppercased() {
            case "NT1", "SMB1": self = .nt1
            case "SMB2", "SMB2_02": self = .smb2_02
            case "SMB2_10": self = .smb2_10
            case "SMB3", "SMB3_00": self = .smb3_00
            case "SMB3_02": self = .smb3_02
            case "SMB3_11": self = .smb3_11
            default: return nil
            }
        }

        private var rank: Int { Self.allCases.firstIndex(of: self) ?? 0 }

        public static func < (lhs: Dialect, rhs: Dialect) -> Bool { lhs.rank < rhs.rank }
    }

    /// SMB3 encryption of the session: `required` refuses a server that cannot encrypt,
    /// `desired` encrypts where the server can (SMB3), `off` never asks (signing still holds).
    public enum Encryption: String, Sendable, Hashable, CaseIterable {
        case required, desired, off
    }

    public var minProtocol: Dialect
    public var encryption: Encryption
    /// Kerberos instead of NTLMv2; nil for the source credentials (user and password).
    public var kerberos: KerberosAccount?

    public init(minProtocol: Dialect = .smb2_02, encryption: Encryption = .desired, kerberos: KerberosAccount? = nil) {
        self.minProtocol = minProtocol
        self.encryption = encryption
        self.kerberos = kerberos
    }

    /// Whether SMB1 may be negotiated at all.
    public var allowsSMB1: Bool { minProtocol == .nt1 }
}

/// A Kerberos service account for SMB logins: its tickets come from the keytab (put into a
/// private ticket cache of this process, no kinit) or, without one, from the ticket cache
/// `KRB5CCNAME` names.
public struct KerberosAccount: Sendable, Hashable, CustomStringConvertible {
    /// `svc-standby@CONTOSO.COM`
    public var principal: String
    public var keytab: String?
    /// A krb5.conf for the realm; nil for `KRB5_CONFIG` or the system's.
    public var krb5Conf: String?

    public init(principal: String, keytab: String? = nil, krb5Conf: String? = nil) {
        self.principal = principal
        self.keytab = keytab
        self.krb5Conf = krb5Conf
    }

    public var description: String {
        keytab.map { "Kerberos as \(principal) (keytab \($0))" } ?? "Kerberos as \(principal) (ticket cache)"
    }
}
