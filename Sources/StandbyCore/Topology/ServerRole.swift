/// The server roles a topology may name (`standby_servers[].roles`, a service's `roles`, a
/// scenario's `roles`): those of an OCS 2007 R2 deployment as the source strategy lists them. A
/// role outside the list is a typo that would quietly leave a service out of every partial-loss
/// scenario, or a core service without its standby server.
public enum ServerRole: String, Sendable, CaseIterable {
    case frontEnd = "front-end"
    case backEndSQL = "back-end-sql"
    case standardEdition = "standard-edition"
    case activeDirectory = "active-directory"
    case archiving
    case archivingSQL = "archiving-sql"
    case monitoring
    case monitoringSQL = "monitoring-sql"
    case groupChat = "group-chat"
    case groupChatCompliance = "group-chat-compliance"
    case mediation
    case edge
    case forwardProxy = "forward-proxy"
    case communicatorWebAccess = "communicator-web-access"
    case avConferencing = "a-v-conferencing"
    case director
}
