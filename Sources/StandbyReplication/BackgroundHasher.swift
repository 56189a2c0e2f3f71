import Crypto
import Dispatch
import Foundation

/// SHA-256 of a whole file computed on a thread of its own while the transfer thread cuts and
/// hashes chunks: on two cores a full read then costs one SHA-256 pass of wall time, not two.
/// At most `limit` bytes wait in the queue (back-pressure), so memory stays bounded.
final class BackgroundHasher: @unchecked Sendable {
    // The hasher is touched only on `queue`; the semaphore bounds what waits for it.
    private var hasher = SHA256()
    private let queue = DispatchQueue(label: "standby.file-hash")
    private let slots: DispatchSemaphore
    private let pieceSize = 1 << 20
    private var pending: [UInt8] = []

    init(limit: Int = 8 << 20) {
        slots = DispatchSemaphore(value: max(1, limit / pieceSize))
        pending.reserveCapacity(pieceSize)
    }

    /// Copies `bytes` for the hashing thread (in pieces of 1 MiB).
    func update(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes[...]
        while !rest.isEmpty {
            let take = min(pieceSize - pending.count, rest.count)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest.prefix(take)))
            rest = rest.dropFirst(take)
            if pending.count == pieceSize { submit() }
        }
    }

    private func submit() {
        guard !pending.isEmpty else { return }
        let piece = pending
        pending.removeAll(keepingCapacity: true)
        slots.wait()
        queue.async {
            piece.withUnsafeBytes { self.hasher.update(bufferPointer: $0) }
            self.slots.signal()
        }
    }

    /// Waits for the queue and returns the digest.
    func finalize() -> [UInt8] {
        submit()
        return queue.sync { Array(hasher.finalize()) }
    }
}
