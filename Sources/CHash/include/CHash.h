#ifndef STANDBY_CHASH_H
#define STANDBY_CHASH_H

#include <stddef.h>
#include <stdint.h>

/// A SHA-256 computation fed in pieces: the chaining state, the bytes short of a whole
/// 64-byte block, and the length so far.
typedef struct {
    uint32_t state[8];
    uint8_t tail[64];
    uint64_t length;
} standby_sha256;

/// 1 when this CPU has the SHA extensions (and SSSE3, SSE4.1) the functions below need; 0
/// otherwise, and always 0 off x86-64. None of the others may be called then.
int standby_sha256_available(void);

void standby_sha256_init(standby_sha256 *sha);
void standby_sha256_update(standby_sha256 *sha, const void *bytes, size_t count);
/// Writes the 32-byte digest. `sha` is not usable afterwards.
void standby_sha256_final(standby_sha256 *sha, uint8_t digest[32]);

/// The SHA-256 of each chunk of a run of consecutive chunks, and the same bytes fed on to
/// `file`: chunk i is [ends[i-1], ends[i]) of `base` (the first starts at 0), and its digest
/// goes to `digests + 32 * i`. The chunk and the file computations run interleaved, two
/// independent streams through the SHA units, which is faster than one after the other.
void standby_sha256_chunks(
    standby_sha256 *file, const uint8_t *base, const intptr_t *ends, size_t count, uint8_t *digests);

#endif
