import ArgumentParser
import Foundation
import StandbyLab

/// The lab's own command: starts and stops the loopback servers of `sites/lab` for the demo and
/// for trying Standby by hand.
@main
struct StandbyLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "standby-lab",
        abstract: "Start and stop the loopback servers of the Standby lab (sites/lab).",
        subcommands: [
            Up.self, Down.self, FrontEnd.self, LosePrimary.self, RecoverPrimary.self, Backups.self, VerifyBackup.self,
            Link.self,
        ])

    struct Common: ParsableArguments {
        @Option(help: "The lab directory: keys, backups, server logs, pids and lab.env.")
        var dir: String

        func site() throws -> LabSite { try LabSite(directory: dir) }
    }

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start BIND and Knot for lab.test, the primary's backup source and front end; write DIR/lab.env.")
        @OptionGroup var common: Common
        @Option(help: "Size of the generated database backup in MiB.") var backupMiB = 32
        @Flag(help: "The zone ad.lab.test on a Samba AD domain controller (GSS-TSIG only), for sites/lab-ad.")
        var ad = false

        func run() throws {
            try common.site().up(backupMiB: backupMiB, activeDirectory: ad)
            print("lab is up; source \(common.dir)/lab.env")
        }
    }

    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop every lab server.")
        @OptionGroup var common: Common
        func run() throws { try common.site().down() }
    }

    struct FrontEnd: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "frontend", abstract: "Start a site's SIP front-end stand-in (does nothing if it runs).")
        @Argument(help: "start") var verb: String
        @Option(help: "primary or secondary") var site: String
        @OptionGroup var common: Common

        func validate() throws {
            guard verb == "start" else { throw ValidationError("the only verb is start") }
            guard ["primary", "secondary"].contains(site) else {
                throw ValidationError("--site is primary or secondary")
            }
        }

        func run() throws {
            try common.site().startFrontEnd(site: site)
            print("front end of the \(site) site answers SIP OPTIONS")
        }
    }

    struct LosePrimary: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lose-primary", abstract: "The primary site is lost: stop its front end and backup source.")
        @OptionGroup var common: Common
        func run() throws { try common.site().losePrimary() }
    }

    struct RecoverPrimary: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "recover-primary",
            abstract: "The primary site is rebuilt: start its backup source and front end again.")
        @OptionGroup var common: Common
        func run() throws { try common.site().startPrimary() }
    }

    struct Backups: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the backups of a later day (1% of the database pages rewritten per day).")
        @OptionGroup var common: Common
        @Option(help: "The day (1 is the first backup).") var day: Int
        @Option(help: "Size of the database backup in MiB.") var backupMiB = 32
        func run() throws { try common.site().writeBackups(day: day, databaseMiB: backupMiB) }
    }

    struct VerifyBackup: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify-backup",
            abstract: "Check a restored lab database backup, as RESTORE VERIFYONLY would (exit 1 if it is not one).")
        @Argument(help: "The restored rtc.bak.") var path: String
        func run() throws {
            do {
                print(try LabSite.verifyDatabaseBackup(at: path))
            } catch let error as LabError {
                FileHandle.standardError.write(Data("standby-lab: \(error)\n".utf8))
                throw ExitCode.failure
            }
        }
    }

    struct Link: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A shaped link in the foreground: a loopback TCP proxy with a delay and a rate cap to HOST:PORT.")
        @Option(help: "The server behind the link, HOST:PORT (an IPv4 address).") var to: String
        @Option(help: "RTT[,RATE], e.g. 40ms,100Mbit or 80ms,1Gbit.") var link: String

        func run() throws {
            guard let shape = LinkShaper.Link(parsing: link) else {
                throw ValidationError("cannot read the link \(link) (try 40ms,100Mbit)")
            }
            let parts = to.split(separator: ":")
            guard parts.count == 2, let port = UInt16(parts[1]) else {
                throw ValidationError("--to is HOST:PORT, not \(to)")
            }
            let shaper = try LinkShaper.start(link: shape, to: String(parts[0]), port: port)
            print("127.0.0.1:\(shaper.port) -> \(to) over \(shape); Ctrl-C stops it")
            fflush(nil)
            while true {
                sleep(10)
                let counted = shaper.counters
                print(
                    "\(counted.connections) connections, \(counted.bytesUp) bytes up, \(counted.bytesDown) bytes down")
                fflush(nil)
            }
        }
    }
}
