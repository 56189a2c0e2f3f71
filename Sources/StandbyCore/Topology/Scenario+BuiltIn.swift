extension Scenario {
    /// The losses the source document plans for, from a back-end database to a whole site.
    /// A partial loss restores the services running on the lost roles and leaves clients where they are.
    public static let builtIn: [Scenario] = [
        Scenario(
            name: "site-loss", summary: "Loss of the whole primary site, its servers and directory",
            roles: nil, movesToSecondary: true),
        Scenario(
            name: "back-end-database",
            summary: "Loss of the RTC, RTCConfig or RTCab database, or of the back-end database server",
            roles: ["back-end-sql"], movesToSecondary: false),
        Scenario(
            name: "standard-edition-server", summary: "Loss of a Standard Edition server",
            roles: ["standard-edition"], movesToSecondary: false),
        Scenario(
            name: "enterprise-pool-servers", summary: "Loss of one or more servers of an Enterprise pool",
            roles: ["front-end"], movesToSecondary: false),
        Scenario(
            name: "directory-and-front-ends",
            summary: "Loss of Active Directory Domain Services with a Standard Edition server or every Front End",
            roles: ["active-directory", "front-end", "standard-edition"], movesToSecondary: false),
        Scenario(
            name: "archiving-server", summary: "Loss of an Archiving Server or the LCSLog database",
            roles: ["archiving"], movesToSecondary: false),
        Scenario(
            name: "monitoring-server", summary: "Loss of a Monitoring Server, the LcsCDR or QoEMetrics database",
            roles: ["monitoring"], movesToSecondary: false),
        Scenario(
            name: "group-chat-server", summary: "Loss of a Group Chat Server or the Group Chat database",
            roles: ["group-chat"], movesToSecondary: false),
        Scenario(
            name: "group-chat-compliance-server",
            summary: "Loss of a Group Chat Compliance Server or its database",
            roles: ["group-chat-compliance"], movesToSecondary: false),
        Scenario(
            name: "edge-mediation-proxy", summary: "Loss of a Mediation Server, forward proxy or Edge Server",
            roles: ["mediation", "edge", "forward-proxy"], movesToSecondary: false),
    ]
}
