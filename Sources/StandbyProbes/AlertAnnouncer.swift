import Foundation

/// Who posts the alerts when several watchers probe the same sites (the controllers of a cluster):
/// every watcher probes and keeps its own history, but only the one that may post (the leader)
/// announces a site's verdict, and what was announced is shared. A new announcer (after a
/// takeover) so neither repeats the alert its predecessor posted nor misses one it never did.
public protocol AlertAnnouncer: Sendable {
    /// Named in the alerts this watcher posts.
    var node: String { get }

    /// Whether this watcher posts now. When false it probes, records and stays quiet.
    var mayPost: Bool { get }

    /// The verdict last announced for each site, by whichever watcher announced it.
    func announced() async throws -> [ProbeSite: SiteVerdict]

    /// Records that `verdict` was announced for `site`; refused once this watcher may not post.
    func record(_ verdict: SiteVerdict, site: ProbeSite, at: Date) async throws
}
