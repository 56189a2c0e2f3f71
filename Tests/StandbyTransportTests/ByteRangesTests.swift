import Foundation
import StandbyLab
import Testing

@testable import StandbyTransport

/// Several byte ranges in one request: the multipart answer taken apart (fed in pieces of every
/// size, as the network cuts it), and nginx answering real requests.
@Suite struct ByteRangesBodyTests {
    let file = [UInt8](testBytes(10_000, seed: 5))

    /// A multipart/byteranges body as RFC 9110 lays it out, of `parts` (first, last) of `file`.
    func multipart(_ parts: [(Int, Int)], boundary: String = "3d6b6a416f9b5") -> [UInt8] {
        var body: [UInt8] = []
        for (first, last) in parts {
            body += Array("\r\n--\(boundary)\r\nContent-Type: application/octet-stream\r\n".utf8)
            body += Array("Content-Range: bytes \(first)-\(last)/\(file.count)\r\n\r\n".utf8)
            body += file[first...last]
        }
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        return body
    }

    func take(_ ranges: [ByteRange], _ body: [UInt8], piece: Int, contentType: String?, contentRange: String? = nil)
        throws -> (parts: [[UInt8]], left: [ByteRange])
    {
        var parsed = try ByteRangesBody(ranges: ranges, contentType: contentType, contentRange: contentRange)
        var parts = [[UInt8]](repeating: [], count: ranges.count)
        var at = 0
        while at < body.count {
            let end = min(body.count, at + piece)
            try body[at..<end].withUnsafeBytes { bytes in
                try parsed.feed(bytes) { index, part in parts[index] += Array(part) }
            }
            at = end
        }
        return (parts, parsed.remaining)
    }

    func expected(_ ranges: [ByteRange]) -> [[UInt8]] {
        ranges.map { Array(file[Int($0.offset)..<Int($0.end)]) }
    }

    @Test(arguments: [1, 2, 7, 100, 4096, 100_000])
    func partsInAnyPiecesAreTheRangesAskedFor(piece: Int) throws {
        let ranges = [
            ByteRange(offset: 0, length: 10), ByteRange(offset: 100, length: 1000), ByteRange(offset: 5000, length: 1),
            ByteRange(offset: 9000, length: 1000),
        ]
        let body = multipart([(0, 9), (100, 1099), (5000, 5000), (9000, 9999)])
        let (parts, left) = try take(
            ranges, body, piece: piece, contentType: "multipart/byteranges; boundary=3d6b6a416f9b5")
        #expect(parts == expected(ranges))
        #expect(left.isEmpty)
    }

    @Test func coalescedPartsAreCutToTheRanges() throws {
        // The server merged the first two ranges and the gap between them into one part, and
        // quoted its boundary.
        let ranges = [
            ByteRange(offset: 10, length: 20), ByteRange(offset: 40, length: 10), ByteRange(offset: 600, length: 50),
        ]
        let body = multipart([(10, 49), (590, 700)], boundary: "b:x")
        let (parts, left) = try take(ranges, body, piece: 13, contentType: "multipart/byteranges; boundary=\"b:x\"")
        #expect(parts == expected(ranges))
        #expect(left.isEmpty)
    }

    @Test func oneCoveringPartIsCutToTheRanges() throws {
        let ranges = [ByteRange(offset: 10, length: 20), ByteRange(offset: 400, length: 10)]
        let (parts, left) = try take(
            ranges, Array(file[5...499]), piece: 64, contentType: "application/octet-stream",
            contentRange: "bytes 5-499/10000")
        #expect(parts == expected(ranges))
        #expect(left.isEmpty)
    }

    @Test func partsLeftOutOrOutOfOrderAreWhatRemains() throws {
        let ranges = [
            ByteRange(offset: 0, length: 10), ByteRange(offset: 100, length: 10), ByteRange(offset: 200, length: 10),
        ]
        // The second range comes after the third, and the first is cut short by two bytes.
        let body = multipart([(0, 7), (200, 209), (100, 109)])
        let (parts, left) = try take(
            ranges, body, piece: 5, contentType: "multipart/byteranges; boundary=3d6b6a416f9b5")
        #expect(parts[0] == Array(file[0..<8]))
        #expect(parts[1].isEmpty && parts[2].isEmpty)
        #expect(left == [ByteRange(offset: 8, length: 2), ranges[1], ranges[2]])
    }

    @Test func aPartWithoutContentRangeIsMalformed() throws {
        let body = Array("--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n".utf8)
        #expect(throws: ByteRangesBody.Malformed.self) {
            _ = try take(
                [ByteRange(offset: 0, length: 5)], body, piece: 3, contentType: "multipart/byteranges; boundary=b")
        }
        #expect(throws: ByteRangesBody.Malformed.self) {
            _ = try ByteRangesBody(
                ranges: [ByteRange(offset: 0, length: 5)], contentType: "text/plain", contentRange: nil)
        }
    }
}

@Suite(.tags(.server)) struct MultipleRangesTests {
    /// Ranges of a 2 MB file, sorted and apart, some a byte long, some neighbours.
    func ranges() -> [ByteRange] {
        var random = SystemRandomNumberGenerator()
        var out: [ByteRange] = []
        var at: Int64 = 17
        while at < 1_970_000 && out.count < 150 {
            let length = Int64.random(in: 1...20_000, using: &random)
            out.append(ByteRange(offset: at, length: length))
            at += length + (out.count % 5 == 0 ? 0 : Int64.random(in: 1...10_000, using: &random))
        }
        return out
    }

    func fetch(_ session: TransferSession, _ url: URL, _ ranges: [ByteRange]) throws -> [Data] {
        var parts = [Data](repeating: Data(), count: ranges.count)
        try session.get(url, ranges: ranges) { index, bytes in parts[index].append(contentsOf: bytes) }
        return parts
    }

    @Test func severalRangesTravelInOneRequest() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let nginx = try NginxServer.start(in: lab)
        defer { nginx.stop() }
        let content = testBytes(2_000_000, seed: 9)
        try content.write(to: URL(fileURLWithPath: nginx.root + "/db.bak"))
        let session = try TransferSession(logger: logger)
        let ranges = ranges()
        let parts = try fetch(session, nginx.url("db.bak"), ranges)
        for (range, part) in zip(ranges, parts) {
            #expect(part == content[Int(range.offset)..<Int(range.end)], "range \(range)")
        }
        let lines = nginx.requestLines()
        #expect(lines.count == 1, "\(lines)")
        #expect(lines.first?.contains("\" 206 ") == true)
        #expect(session.stats.requests == 1)
        // The parts' headers are all the body adds: about 100 bytes a range.
        let asked = ranges.reduce(0) { $0 + $1.length }
        #expect(session.stats.bodyBytes < asked + Int64(ranges.count) * 160)
    }

    /// `max_ranges 1`: nginx answers several ranges with the whole file (200), as it would if
    /// it ignored Range. The answer is cut short, and the ranges asked for one a request.
    @Test func aServerThatAnswersWithTheWholeFileIsAskedOneRangeAtATime() throws {
        let lab = try LabDirectory()
        defer { lab.remove() }
        let nginx = try NginxServer.start(in: lab, extraServer: "max_ranges 1;")
        defer { nginx.stop() }
        let content = testBytes(4_000_000, seed: 10)
        try content.write(to: URL(fileURLWithPath: nginx.root + "/db.bak"))
        let session = try TransferSession(logger: logger)
        let ranges = Array(ranges().prefix(30))
        let parts = try fetch(session, nginx.url("db.bak"), ranges)
        for (range, part) in zip(ranges, parts) {
            #expect(part == content[Int(range.offset)..<Int(range.end)], "range \(range)")
        }
        let lines = nginx.requestLines()
        #expect(lines.count == 31, "\(lines)")
        #expect(lines.first?.contains("\" 200 ") == true)
        #expect(lines.dropFirst().allSatisfy { $0.contains("\" 206 ") })
        // The whole-file answer was stopped early, not read to its end.
        #expect(session.stats.bodyBytes < 2_000_000, "received \(session.stats.bodyBytes)")
    }
}
