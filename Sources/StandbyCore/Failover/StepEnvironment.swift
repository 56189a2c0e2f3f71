/// The environment an `exec` step starts with: the controller's, minus every secret Standby holds,
/// plus the step's own `env:`. A step program is somebody else's code (a vendor's restore script, a
/// runbook's tool); it gets a credential only when the topology hands it one by name, so a secret
/// never leaks into a program, its log or a core dump by inheritance.
public enum StepEnvironment {
    /// Kerberos credentials: a ticket cache and keytabs let any child act as the controller.
    static let kerberos: Set<String> = ["KRB5CCNAME", "KRB5_KTNAME", "KRB5_CLIENT_KTNAME"]

    /// Whether a variable of the controller's environment is a secret a step must not inherit:
    /// - the source credentials (`STANDBY_SOURCE_USER`, `STANDBY_SOURCE_PASSWORD`, and any other
    ///   `STANDBY_*_USER`, `STANDBY_*_PASSWORD`, `STANDBY_*_KEY`, `STANDBY_*_SECRET`);
    /// - every `STANDBY_SSH_*` (the sftp key, known hosts, pinned host key);
    /// - any `*_PASSWORD` or `*_TOKEN`, Standby's or not: the topology reads any variable through
    ///   `${NAME}` (a webhook's bearer token, say), so the controller's environment holds them too;
    /// - the Kerberos variables.
    public static func isSecret(_ name: String) -> Bool {
        if kerberos.contains(name) { return true }
        if name.hasSuffix("_PASSWORD") || name.hasSuffix("_TOKEN") { return true }
        if name.hasPrefix("STANDBY_SSH_") { return true }
        if name.hasPrefix("STANDBY_") {
            return ["_USER", "_KEY", "_SECRET"].contains { name.hasSuffix($0) }
        }
        return false
    }

    /// The child's environment: `controller` without its secrets, then `step` on top (a step may
    /// set any variable, a secret too, explicitly).
    public static func build(controller: [String: String], step: [String: String]) -> [String: String] {
        var environment = controller.filter { !isSecret($0.key) }
        environment.merge(step) { _, explicit in explicit }
        return environment
    }
}
