// Branch-free float maths that GCC/Clang vectorise inside `#pragma omp simd` loops.
//
// libm's expf/logf/sinf are scalar calls unless -ffast-math (which we avoid: it also licenses
// reordering the loss reductions). These are a few ulp accurate over the ranges we use them on.
// Pitfalls: rounding is the 1.5 * 2^23 trick (roundf does not vectorise), clamps are ternaries
// (fmaxf does not either: NaN rules), bit casts are __builtin_bit_cast (not memcpy), and the build
// passes -fno-trapping-math (else selects become predicated ops that GCC will not vectorise) and
// -fno-math-errno (sqrtf); both keep IEEE results, unlike -ffast-math.
#pragma once

#include <cmath>
#include <cstdint>

namespace dd {

// __builtin_bit_cast: GCC >= 11, Clang >= 9
static inline float bits_to_float(uint32_t u) { return __builtin_bit_cast(float, u); }

static inline uint32_t float_to_bits(float f) { return __builtin_bit_cast(uint32_t, f); }

// exp(x) for x <= 0 (clamped at -87 so that 2^n stays a normal float).
// x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), exp(r) by its Taylor series to r^7
// (truncation error r^8/8! < 6e-9), then scale by 2^n through the exponent bits.
// Round to the nearest integer (ties to even) for |x| < 2^22: adding 1.5 * 2^23 drops the fraction.
static inline float round_near(float x) { return (x + 12582912.0f) - 12582912.0f; }

static inline float exp_nonpos(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float n = round_near(x * 1.44269504088896341f);
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 = 0.693359375 - 2.1219444e-4
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const uint32_t scale = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
    return p * bits_to_float(scale);
}

// psi(g) = 2 sigmoid(g) - 1 = tanh(g / 2) = sign(g) (1 - e) / (1 + e), e = exp(-|g|).
// Using |g| keeps e in (0, 1]: no overflow for large |g|.
static inline float psi(float g) {
    const float e = exp_nonpos(-std::fabs(g));
    return std::copysign((1.0f - e) / (1.0f + e), g);
}

// log(u) for u in (0, 1]: u = m 2^k with m in [sqrt(1/2), sqrt(2)),
// log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716: 2 (s + s^3/3 + ... + s^9/9),
// truncation error 2 s^11 / 11 < 7e-10.
static inline float log_unit(float u) {
    uint32_t bits = float_to_bits(u);
    int32_t k = static_cast<int32_t>(bits >> 23) - 127;
    float m = bits_to_float((bits & 0x007FFFFFu) | 0x3F800000u);  // in [1, 2)
    const bool big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    k = big ? k + 1 : k;
    const float s = (m - 1.0f) / (m + 1.0f);
    const float s2 = s * s;
    float p = 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return 2.0f * s * p + static_cast<float>(k) * 0.693147180559945f;
}

// cos(2 pi u), sin(2 pi u) for u in [0, 1): q = round(4u) quarter turns, f = u - q/4 in [-1/8, 1/8],
// x = 2 pi f in [-pi/4, pi/4]; Taylor series to x^11 / x^12 (error < 2e-9), then rotate by q.
static inline void sincos_turn(float u, float* c_out, float* s_out) {
    const float q = round_near(4.0f * u);
    const float x = 6.28318530717959f * (u - 0.25f * q);
    const float x2 = x * x;
    float s = -1.0f / 39916800.0f;
    s = s * x2 + 1.0f / 362880.0f;
    s = s * x2 - 1.0f / 5040.0f;
    s = s * x2 + 1.0f / 120.0f;
    s = s * x2 - 1.0f / 6.0f;
    s = s * x2 + 1.0f;
    s = s * x;
    float c = 1.0f / 479001600.0f;
    c = c * x2 - 1.0f / 3628800.0f;
    c = c * x2 + 1.0f / 40320.0f;
    c = c * x2 - 1.0f / 720.0f;
    c = c * x2 + 1.0f / 24.0f;
    c = c * x2 - 0.5f;
    c = c * x2 + 1.0f;
    // rotate by q quarter turns: (c, s) -> (-s, c) -> (-c, -s) -> (s, -c)
    const int32_t qi = static_cast<int32_t>(q) & 3;
    const float cc = qi == 0 ? c : (qi == 1 ? -s : (qi == 2 ? -c : s));
    const float ss = qi == 0 ? s : (qi == 1 ? c : (qi == 2 ? -s : -c));
    *c_out = cc;
    *s_out = ss;
}

// Philox4x32-10 (Salmon et al., SC'11): counter (c0..c3), key (k0, k1) -> 4 random words, in place.
// Scalars, not an array, so that a loop over counters vectorises.
static inline void philox4x32(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0,
                              uint32_t k1) {
#pragma GCC unroll 10
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
        const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
        const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
        const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
        c1 = static_cast<uint32_t>(p1);
        c3 = static_cast<uint32_t>(p0);
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

// A uniform in (0, 1) from 24 random bits: never 0, so log() is finite.
static inline float unit_open(uint32_t x) {
    // via int32: unsigned-to-float conversion does not vectorise before AVX-512
    return (static_cast<float>(static_cast<int32_t>(x >> 8)) + 0.5f) * (1.0f / 16777216.0f);
}

}  // namespace dd
