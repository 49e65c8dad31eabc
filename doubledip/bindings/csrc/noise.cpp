// out = z + sigma * N(0, 1): Philox4x32-10 counter-based random words, Box-Muller to normals.
//
// Element e takes word e % 4 of the Philox block whose counter is e / 4 (key from the seed), so
// any split of the work gives the same numbers. Words (0, 1) and (2, 3) each make a Box-Muller
// pair: r = sqrt(-2 log u1), z = (r cos 2 pi u2, r sin 2 pi u2).
#include <cmath>

#include "fastmath.h"
#include "kernels.h"

namespace dd {
namespace {

// splitmix64 finaliser: seeds 0, 1, 2... give unrelated Philox keys
inline uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

inline void normals4(uint64_t block, uint32_t k0, uint32_t k1, float& n0, float& n1, float& n2, float& n3) {
    uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32), c2 = 0, c3 = 0;
    philox4x32(c0, c1, c2, c3, k0, k1);
    const float r0 = std::sqrt(-2.0f * log_unit(unit_open(c0)));
    const float r1 = std::sqrt(-2.0f * log_unit(unit_open(c2)));
    float cs0, sn0, cs1, sn1;
    sincos_turn(unit_open(c1), &cs0, &sn0);
    sincos_turn(unit_open(c3), &cs1, &sn1);
    n0 = r0 * cs0;
    n1 = r0 * sn0;
    n2 = r1 * cs1;
    n3 = r1 * sn1;
}

}  // namespace

void perturb(const float* z, float* out, int64_t numel, float sigma, uint64_t seed, int threads) {
    const uint64_t key = mix64(seed);
    const uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    const int64_t blocks = numel / 4;
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
        float n0, n1, n2, n3;  // scalars, not an array: an array in the loop body blocks vectorisation
        normals4(static_cast<uint64_t>(blk), k0, k1, n0, n1, n2, n3);
        out[4 * blk + 0] = z[4 * blk + 0] + sigma * n0;
        out[4 * blk + 1] = z[4 * blk + 1] + sigma * n1;
        out[4 * blk + 2] = z[4 * blk + 2] + sigma * n2;
        out[4 * blk + 3] = z[4 * blk + 3] + sigma * n3;
    }
    if (numel % 4) {  // the tail: the first words of one more block
        float n4[4];
        normals4(static_cast<uint64_t>(blocks), k0, k1, n4[0], n4[1], n4[2], n4[3]);
        for (int64_t e = 4 * blocks; e < numel; ++e) out[e] = z[e] + sigma * n4[e - 4 * blocks];
    }
}

}  // namespace dd
