// SHA-256 with the x86 SHA extensions, one stream or two interleaved. The two-stream kernel
// exists because one stream is bound by the latency of sha256rnds2: a second, independent
// stream fills the gaps, so a chunk's id and the whole file's hash cost little more than one.

#include "CHash.h"

#include <string.h>

#if defined(__x86_64__)

#include <cpuid.h>
#include <immintrin.h>

#define STANDBY_SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))

static const uint32_t round_constants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t initial_state[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

int standby_sha256_available(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    int ssse3 = (ecx >> 9) & 1, sse41 = (ecx >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    int sha = (ebx >> 29) & 1;
    return ssse3 && sse41 && sha;
}

// The SHA units keep the state as two registers, ABEF and CDGH (words high to low).
typedef struct {
    __m128i abef;
    __m128i cdgh;
} lanes;

STANDBY_SHA_TARGET static inline lanes load_state(const uint32_t state[8]) {
    __m128i dcba = _mm_loadu_si128((const __m128i *)&state[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&state[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    lanes l;
    l.abef = _mm_alignr_epi8(cdab, efgh, 8);
    l.cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
    return l;
}

STANDBY_SHA_TARGET static inline void store_state(lanes l, uint32_t state[8]) {
    __m128i feba = _mm_shuffle_epi32(l.abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(l.cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(dchg, feba, 8));
}

// Four rounds on one stream: `w` holds message words 4n..4n+3.
#define FOUR_ROUNDS(l, w, n)                                                                  \
    do {                                                                                      \
        __m128i k = _mm_add_epi32(w, _mm_loadu_si128((const __m128i *)&round_constants[4 * (n)])); \
        l.cdgh = _mm_sha256rnds2_epu32(l.cdgh, l.abef, k);                                    \
        l.abef = _mm_sha256rnds2_epu32(l.abef, l.cdgh, _mm_shuffle_epi32(k, 0x0E));           \
    } while (0)

// The next quad of message words from the four before it (w0 the oldest).
#define SCHEDULE(w0, w1, w2, w3) \
    w0 = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4)), w3)

#define LOAD_WORDS(p, i, mask) _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)((p) + 16 * (i))), mask)

// Rounds 4n..4n+3 of a block whose words are in w[0..3] (quad n in w[n % 4]), for n >= 4.
#define ROUNDS_FROM_SCHEDULE(l, w, n)                                                        \
    do {                                                                                     \
        SCHEDULE(w[(n) % 4], w[((n) + 1) % 4], w[((n) + 2) % 4], w[((n) + 3) % 4]);          \
        FOUR_ROUNDS(l, w[(n) % 4], n);                                                       \
    } while (0)

#define ALL_SCHEDULED_ROUNDS(l, w)                                                            \
    ROUNDS_FROM_SCHEDULE(l, w, 4); ROUNDS_FROM_SCHEDULE(l, w, 5); ROUNDS_FROM_SCHEDULE(l, w, 6); \
    ROUNDS_FROM_SCHEDULE(l, w, 7); ROUNDS_FROM_SCHEDULE(l, w, 8); ROUNDS_FROM_SCHEDULE(l, w, 9); \
    ROUNDS_FROM_SCHEDULE(l, w, 10); ROUNDS_FROM_SCHEDULE(l, w, 11); ROUNDS_FROM_SCHEDULE(l, w, 12); \
    ROUNDS_FROM_SCHEDULE(l, w, 13); ROUNDS_FROM_SCHEDULE(l, w, 14); ROUNDS_FROM_SCHEDULE(l, w, 15)

STANDBY_SHA_TARGET static void compress(uint32_t state[8], const uint8_t *p, size_t blocks) {
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    lanes l = load_state(state);
    for (; blocks > 0; blocks--, p += 64) {
        lanes saved = l;
        __m128i w[4];
        for (int i = 0; i < 4; i++) {
            w[i] = LOAD_WORDS(p, i, mask);
        }
        FOUR_ROUNDS(l, w[0], 0);
        FOUR_ROUNDS(l, w[1], 1);
        FOUR_ROUNDS(l, w[2], 2);
        FOUR_ROUNDS(l, w[3], 3);
        ALL_SCHEDULED_ROUNDS(l, w);
        l.abef = _mm_add_epi32(l.abef, saved.abef);
        l.cdgh = _mm_add_epi32(l.cdgh, saved.cdgh);
    }
    store_state(l, state);
}

// Two streams, block by block in step: the rounds of one fill the latency of the other's.
STANDBY_SHA_TARGET static void compress2(
    uint32_t state_a[8], const uint8_t *a, uint32_t state_b[8], const uint8_t *b, size_t blocks) {
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    lanes la = load_state(state_a), lb = load_state(state_b);
    for (; blocks > 0; blocks--, a += 64, b += 64) {
        lanes saved_a = la, saved_b = lb;
        __m128i wa[4], wb[4];
        for (int i = 0; i < 4; i++) {
            wa[i] = LOAD_WORDS(a, i, mask);
            wb[i] = LOAD_WORDS(b, i, mask);
        }
        FOUR_ROUNDS(la, wa[0], 0); FOUR_ROUNDS(lb, wb[0], 0);
        FOUR_ROUNDS(la, wa[1], 1); FOUR_ROUNDS(lb, wb[1], 1);
        FOUR_ROUNDS(la, wa[2], 2); FOUR_ROUNDS(lb, wb[2], 2);
        FOUR_ROUNDS(la, wa[3], 3); FOUR_ROUNDS(lb, wb[3], 3);
#define BOTH(n) ROUNDS_FROM_SCHEDULE(la, wa, n); ROUNDS_FROM_SCHEDULE(lb, wb, n)
        BOTH(4); BOTH(5); BOTH(6); BOTH(7); BOTH(8); BOTH(9);
        BOTH(10); BOTH(11); BOTH(12); BOTH(13); BOTH(14); BOTH(15);
#undef BOTH
        la.abef = _mm_add_epi32(la.abef, saved_a.abef);
        la.cdgh = _mm_add_epi32(la.cdgh, saved_a.cdgh);
        lb.abef = _mm_add_epi32(lb.abef, saved_b.abef);
        lb.cdgh = _mm_add_epi32(lb.cdgh, saved_b.cdgh);
    }
    store_state(la, state_a);
    store_state(lb, state_b);
}

void standby_sha256_init(standby_sha256 *sha) {
    memcpy(sha->state, initial_state, sizeof initial_state);
    sha->length = 0;
}

void standby_sha256_update(standby_sha256 *sha, const void *bytes, size_t count) {
    const uint8_t *p = bytes;
    size_t held = sha->length % 64;
    sha->length += count;
    if (held > 0) {
        size_t take = 64 - held < count ? 64 - held : count;
        memcpy(sha->tail + held, p, take);
        p += take;
        count -= take;
        if (held + take < 64) return;
        compress(sha->state, sha->tail, 1);
    }
    compress(sha->state, p, count / 64);
    memcpy(sha->tail, p + count / 64 * 64, count % 64);
}

// Pads `tail` (the `held` bytes past the last whole block of a `length`-byte message) and
// compresses the one or two final blocks.
static void finish(uint32_t state[8], const uint8_t *tail, size_t held, uint64_t length, uint8_t digest[32]) {
    uint8_t last[128];
    memcpy(last, tail, held);
    last[held] = 0x80;
    size_t total = held + 9 <= 64 ? 64 : 128;
    memset(last + held + 1, 0, total - held - 1);
    uint64_t bits = length * 8;
    for (int i = 0; i < 8; i++) {
        last[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    }
    compress(state, last, total / 64);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(state[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(state[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(state[i] >> 8);
        digest[4 * i + 3] = (uint8_t)state[i];
    }
}

void standby_sha256_final(standby_sha256 *sha, uint8_t digest[32]) {
    finish(sha->state, sha->tail, sha->length % 64, sha->length, digest);
}

void standby_sha256_chunks(
    standby_sha256 *file, const uint8_t *base, const intptr_t *ends, size_t count, uint8_t *digests) {
    intptr_t total = count > 0 ? ends[count - 1] : 0;
    // The file stream first completes the block it holds part of; from then on `f` is where
    // its next whole block starts. Each chunk takes the file stream's whole blocks that end
    // within it: as many as it can beside its own, interleaved, the rest alone.
    size_t held = file->length % 64;
    const uint8_t *f = base;
    if (held > 0) {
        size_t take = 64 - held < (size_t)total ? 64 - held : (size_t)total;
        memcpy(file->tail + held, base, take);
        f += take;
        if (held + take == 64) compress(file->state, file->tail, 1);
    }
    intptr_t start = 0;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *chunk = base + start, *end = base + ends[i];
        size_t length = (size_t)(ends[i] - start), blocks = length / 64;
        uint32_t state[8];
        memcpy(state, initial_state, sizeof initial_state);
        size_t file_blocks = f < end ? (size_t)(end - f) / 64 : 0;
        size_t both = blocks < file_blocks ? blocks : file_blocks;
        compress2(state, chunk, file->state, f, both);
        f += 64 * both;
        if (blocks > both) compress(state, chunk + 64 * both, blocks - both);
        if (f < end && (size_t)(end - f) >= 64) {
            size_t more = (size_t)(end - f) / 64;
            compress(file->state, f, more);
            f += 64 * more;
        }
        finish(state, chunk + 64 * blocks, length % 64, length, digests + 32 * i);
        start = ends[i];
    }
    if (f < base + total) memcpy(file->tail, f, (size_t)(base + total - f));
    file->length += (uint64_t)total;
}

#else

int standby_sha256_available(void) { return 0; }
void standby_sha256_init(standby_sha256 *sha) { (void)sha; }
void standby_sha256_update(standby_sha256 *sha, const void *bytes, size_t count) {
    (void)sha, (void)bytes, (void)count;
}
void standby_sha256_final(standby_sha256 *sha, uint8_t digest[32]) { (void)sha, (void)digest; }
void standby_sha256_chunks(
    standby_sha256 *file, const uint8_t *base, const intptr_t *ends, size_t count, uint8_t *digests) {
    (void)file, (void)base, (void)ends, (void)count, (void)digests;
}

#endif
