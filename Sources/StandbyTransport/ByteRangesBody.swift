/// The body of a response to a request for several byte ranges (`Range: bytes=a-b,c-d,...`),
/// taken apart as it streams in and handed out range by range, in the order asked for.
///
/// A server may answer with `multipart/byteranges` (one part per range, as nginx, Apache and
/// IIS do), with one `206` part that covers them all (it coalesced them, RFC 9110 §14.3
/// allows that), or with parts that merge neighbouring ranges. Each part says where it lies
/// (`Content-Range`), and every byte is placed by that, never by its order alone: bytes
/// between or around the ranges asked for are dropped. What the body leaves out (a part the
/// server skipped, parts out of order) is left to `remaining`, for the caller to ask again.
struct ByteRangesBody {
    /// Ranges asked for: sorted by offset, none overlapping, none empty.
    let ranges: [ByteRange]
    /// The range being filled, and how much of it is.
    private(set) var current = 0
    private(set) var filled: Int64 = 0

    private enum Mode {
        /// One part: the body is the file from `at` on.
        case single(at: Int64)
        case multipart(delimiter: [UInt8])
    }

    private enum State {
        /// Reading a delimiter line and the part's headers into `pending`.
        case headers
        /// Inside a part's bytes: the next one is the file's byte `at`, `left` more follow.
        case data(at: Int64, left: Int64)
        /// The close delimiter was read, or a part broke the order: the rest is ignored.
        case done
    }

    private let mode: Mode
    private var state: State
    private var pending: [UInt8] = []
    /// A part header block larger than this is not a multipart body.
    static let headerLimit = 4096

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    /// `contentType` and `contentRange` are the response's headers of those names.
    init(ranges: [ByteRange], contentType: String?, contentRange: String?) throws {
        self.ranges = ranges
        if let contentType, let boundary = Self.boundary(of: contentType) {
            mode = .multipart(delimiter: Array("--\(boundary)".utf8))
            state = .headers
        } else if let contentRange, let span = Self.span(of: contentRange) {
            mode = .single(at: span.offset)
            state = .data(at: span.offset, left: span.length)
        } else {
            throw Malformed(description: "a 206 answer with neither multipart/byteranges nor a Content-Range")
        }
    }

    /// True once every range asked for is complete.
    var isComplete: Bool { current == ranges.count }

    /// What the body did not deliver: the rest of the range being filled, and every later one.
    var remaining: [ByteRange] {
        guard current < ranges.count else { return [] }
        var rest = Array(ranges[current...])
        rest[0] = ByteRange(offset: rest[0].offset + filled, length: rest[0].length - filled)
        return rest
    }

    /// Feeds the next bytes of the body; `deliver` gets (index of the range, its next bytes).
    mutating func feed(
        _ bytes: UnsafeRawBufferPointer, deliver: (Int, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var input = bytes[...]
        while !input.isEmpty {
            switch state {
            case .done:
                return
            case .data(let at, let left):
                let count = Int(min(left, Int64(input.count)))
                try place(UnsafeRawBufferPointer(rebasing: input.prefix(count)), at: at, deliver: deliver)
                input = input.dropFirst(count)
                if case .done = state { return }
                if Int64(count) == left {
                    if case .single = mode {
                        state = .done
                    } else {
                        state = .headers
                    }
                } else {
                    state = .data(at: at + Int64(count), left: left - Int64(count))
                }
            case .headers:
                // Header bytes are few (about 100 a part): taken one at a time, so that the
                // part's data, in the same buffer, is handed on without a copy.
                guard case .multipart(let delimiter) = mode else { return }
                while let byte = input.first {
                    input = input.dropFirst()
                    pending.append(byte)
                    if pending.count > Self.headerLimit {
                        throw Malformed(description: "a part's headers run past \(Self.headerLimit) bytes")
                    }
                    if try headerBlockEnds(delimiter) { break }
                }
            }
        }
    }

    /// After each header byte: whether the block in `pending` is complete (the state then moves
    /// on to the part's data, or to done at the close delimiter).
    private mutating func headerBlockEnds(_ delimiter: [UInt8]) throws -> Bool {
        guard let start = pending.firstRange(of: delimiter)?.lowerBound else { return false }
        let afterDelimiter = start + delimiter.count
        if pending.count >= afterDelimiter + 2, pending[afterDelimiter] == 0x2D, pending[afterDelimiter + 1] == 0x2D {
            state = .done
            pending.removeAll()
            return true
        }
        guard pending.count >= afterDelimiter + 4, pending.suffix(4).elementsEqual([0x0D, 0x0A, 0x0D, 0x0A]) else {
            return false
        }
        let text = String(decoding: pending[afterDelimiter...], as: UTF8.self)
        pending.removeAll()
        for line in text.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":"),
                line[..<colon].trimmingCharacters(in: .whitespaces).lowercased() == "content-range"
            else { continue }
            guard let span = Self.span(of: String(line[line.index(after: colon)...])) else {
                throw Malformed(description: "a part's Content-Range is unreadable: \(line)")
            }
            state = .data(at: span.offset, left: span.length)
            return true
        }
        throw Malformed(description: "a part has no Content-Range")
    }

    /// Hands the bytes of the file at `at` to the ranges they fall into, dropping the others.
    /// Bytes that start after what the current range still needs mean a part is missing or out
    /// of order: the body is not followed further (`remaining` says what to ask again).
    private mutating func place(
        _ bytes: UnsafeRawBufferPointer, at start: Int64, deliver: (Int, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var at = start
        var rest = bytes[...]
        while !rest.isEmpty, current < ranges.count {
            let wanted = ranges[current].offset + filled
            if at < wanted {
                let skip = Int(min(wanted - at, Int64(rest.count)))
                rest = rest.dropFirst(skip)
                at += Int64(skip)
                continue
            }
            if at > wanted {
                state = .done
                return
            }
            let take = Int(min(ranges[current].length - filled, Int64(rest.count)))
            try deliver(current, UnsafeRawBufferPointer(rebasing: rest.prefix(take)))
            rest = rest.dropFirst(take)
            at += Int64(take)
            filled += Int64(take)
            if filled == ranges[current].length {
                current += 1
                filled = 0
            }
        }
    }

    /// The boundary of a `multipart/byteranges` content type, unquoted.
    static func boundary(of contentType: String) -> String? {
        let parts = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let kind = parts.first, kind.lowercased() == "multipart/byteranges" else { return nil }
        for part in parts.dropFirst() {
            guard let equals = part.firstIndex(of: "="),
                part[..<equals].trimmingCharacters(in: .whitespaces).lowercased() == "boundary"
            else { continue }
            var value = part[part.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 {
                value = String(value.dropFirst().dropLast())
            }
            return value.isEmpty ? nil : value
        }
        return nil
    }

    /// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`) as a range.
    static func span(of contentRange: String) -> ByteRange? {
        let text = contentRange.trimmingCharacters(in: .whitespaces)
        guard text.lowercased().hasPrefix("bytes ") else { return nil }
        let spec = text.dropFirst(6).split(separator: "/", maxSplits: 1).first ?? ""
        let bounds = spec.split(separator: "-", maxSplits: 1)
        guard bounds.count == 2, let first = Int64(bounds[0].trimmingCharacters(in: .whitespaces)),
            let last = Int64(bounds[1].trimmingCharacters(in: .whitespaces)), first >= 0, last >= first
        else { return nil }
        return ByteRange(offset: first, length: last - first + 1)
    }
}
