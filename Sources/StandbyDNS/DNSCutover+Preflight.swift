extension DNSCutover {
    /// Proves, changing nothing, that this cutover can run now: the primary master accepts the
    /// dry run's signed no-op update (the key is right, the account may change the records, and
    /// every record set holds its expected value, or already its target), and every authoritative server answers
    /// for every record set with the AA bit, so the verification after the update can succeed.
    ///
    /// The failover runs it before stage 1, so that a missing key or an unreachable server is
    /// found before the core services are touched, not at stage 2.
    public func preflight() async throws(DNSError) -> CutoverResult {
        let started = ContinuousClock.now
        let proof = try await run(dryRun: true)
        let states = await inspect()
        for state in states {
            if let problem = state.problem {
                throw DNSError(
                    .network, server: state.server, "\(state.server) cannot be asked for the records: \(problem)")
            }
            if let answer = state.records.first(where: { !$0.authoritative }) {
                throw DNSError(
                    .notAuthoritative, server: state.server,
                    "\(state.server) does not answer authoritatively for \(answer.name) \(answer.type) (\(answer.rcode)): it could never be verified"
                )
            }
        }
        return CutoverResult(
            outcome: proof.outcome, dryRun: true, primary: primary, before: proof.before, servers: states,
            elapsed: ContinuousClock.now - started, notes: proof.notes)
    }
}
