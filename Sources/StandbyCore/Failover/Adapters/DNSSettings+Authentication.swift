import Foundation
import StandbyDNS

extension DNSSettings {
    /// How the updates of this zone are signed: the TSIG key from `dns.key` (loaded, its mode
    /// checked), or GSS-TSIG as the `dns.gss_tsig` service account. A GSS-TSIG session is shared
    /// within the process, so the preflight's security context serves the cutover too.
    public func authentication(baseDirectory: String) throws(DNSError) -> DNSAuthentication {
        func resolve(_ path: String) -> String {
            path.hasPrefix("/") ? path : (baseDirectory as NSString).appendingPathComponent(path)
        }
        if let gss = gssTSIG {
            let secret: GSSCredentialSource.Secret =
                if let keytab = gss.keytab {
                    .keytab(resolve(keytab))
                } else if let file = gss.passwordFile {
                    .passwordFile(resolve(file))
                } else {
                    .ticketCache
                }
            let source = GSSCredentialSource(
                principal: gss.principal, secret: secret, krb5Conf: gss.krb5Conf.map(resolve),
                serverPrincipal: gss.serverPrincipal)
            try source.validate()
            return .gss(GSSTSIGSession.shared(source))
        }
        guard let key else { throw DNSError(.keyFile, "dns has neither key nor gss_tsig") }
        return .tsig(try TSIGKey.load(path: resolve(key)))
    }
}
