// The exclusion loss, one pyramid level at a time (ALGORITHM.md section 4).
//
// For an image x (c x h x w), gx = x[r+1, q] - x[r, q] (rows r < h-1), gy = x[r, q+1] - x[r, q]
// (columns q < w-1), psi(g) = 2 sigmoid(g) - 1, P = psi(g)^2. For the pair (a_j, b_i) and one
// direction, S_ji = sum over positions of Pa_j Qb_i (Q: P of b); the level's terms are (S / count)^(1/4).
//
// Backward, given K_ji = dLoss/dS_ji (= dLoss/d(mean) / count):
//   dLoss/dPa_j = sum_i K_ji Qb_i,  dLoss/dQb_i = sum_j K_ji Pa_j   (per position)
//   dP/dg = 2 psi psi' = psi (1 - psi^2)   (psi' = (1 - psi^2) / 2)
//   with G = dLoss/dg:  dLoss/dx[r, q] = Gx[r-1, q] - Gx[r, q] + Gy[r, q-1] - Gy[r, q]  (+ coarser levels)
// Rows are processed in chunks; each chunk recomputes the x-terms of the row above it.
// C = 3 has fused row loops (psi values never leave registers); other C go through row buffers.
#include <cstring>
#include <vector>

#include "fastmath.h"
#include "kernels.h"

namespace dd {
namespace {

constexpr int64_t kRowsFwd = 16;
constexpr int64_t kRowsBwd = 32;

// P[q] = psi(x1[q] - x0[q])^2, and D[q] = dP/dg = psi (1 - psi^2) when D is given.
inline void squash_row(const float* x0, const float* x1, float* P, float* D, int64_t len) {
    if (D) {
#pragma omp simd
        for (int64_t q = 0; q < len; ++q) {
            const float s = psi(x1[q] - x0[q]);
            P[q] = s * s;
            D[q] = s * (1.0f - s * s);
        }
    } else {
#pragma omp simd
        for (int64_t q = 0; q < len; ++q) {
            const float s = psi(x1[q] - x0[q]);
            P[q] = s * s;
        }
    }
}

inline float dot(const float* x, const float* y, int64_t len) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t q = 0; q < len; ++q) s += x[q] * y[q];
    return s;
}

// Ga_j = Da_j * sum_i K_ji Qb_i and Gb_i = Db_i * sum_j K_ji Pa_j over one row of `len` positions.
// NC > 0: the channel count as a compile-time constant (one fused loop per output row);
// NC == 0: any count, read from `c`.
template <int NC>
inline void pair_grads(const float* Pa, const float* Da, const float* Qb, const float* Db,
                       const float* K, int64_t c_, int64_t stride, int64_t len, float* Ga, float* Gb,
                       int64_t gstride) {
    const int64_t c = NC > 0 ? NC : c_;
    for (int64_t j = 0; j < c; ++j) {
        float* out = Ga + j * gstride;
        const float* D = Da + j * stride;
        if (NC > 0) {
#pragma omp simd
            for (int64_t q = 0; q < len; ++q) {
                float s = 0.0f;
                for (int i = 0; i < NC; ++i) s += K[j * NC + i] * Qb[i * stride + q];
                out[q] = s * D[q];
            }
        } else {
            for (int64_t q = 0; q < len; ++q) out[q] = 0.0f;
            for (int64_t i = 0; i < c; ++i) {
                const float kji = K[j * c + i];
                const float* Q = Qb + i * stride;
#pragma omp simd
                for (int64_t q = 0; q < len; ++q) out[q] += kji * Q[q];
            }
#pragma omp simd
            for (int64_t q = 0; q < len; ++q) out[q] *= D[q];
        }
    }
    for (int64_t i = 0; i < c; ++i) {
        float* out = Gb + i * gstride;
        const float* D = Db + i * stride;
        if (NC > 0) {
#pragma omp simd
            for (int64_t q = 0; q < len; ++q) {
                float s = 0.0f;
                for (int j = 0; j < NC; ++j) s += K[j * NC + i] * Pa[j * stride + q];
                out[q] = s * D[q];
            }
        } else {
            for (int64_t q = 0; q < len; ++q) out[q] = 0.0f;
            for (int64_t j = 0; j < c; ++j) {
                const float kji = K[j * c + i];
                const float* P = Pa + j * stride;
#pragma omp simd
                for (int64_t q = 0; q < len; ++q) out[q] += kji * P[q];
            }
#pragma omp simd
            for (int64_t q = 0; q < len; ++q) out[q] *= D[q];
        }
    }
}

inline void pair_grads_any(const float* Pa, const float* Da, const float* Qb, const float* Db,
                           const float* K, int64_t c, int64_t stride, int64_t len, float* Ga,
                           float* Gb, int64_t gstride) {
    if (c == 1)
        pair_grads<1>(Pa, Da, Qb, Db, K, c, stride, len, Ga, Gb, gstride);
    else
        pair_grads<0>(Pa, Da, Qb, Db, K, c, stride, len, Ga, Gb, gstride);
}

// up[q] = u[q / 2] / 4 for q < 2 wc, 0 after (an odd last column pooled into nothing)
inline void spread_row(const float* u, int64_t wc, float* up, int64_t w) {
#pragma omp simd
    for (int64_t q = 0; q < wc; ++q) {
        up[2 * q] = 0.25f * u[q];
        up[2 * q + 1] = 0.25f * u[q];
    }
    for (int64_t q = 2 * wc; q < w; ++q) up[q] = 0.0f;
}

// ---- C = 3 (the method's RGB images): one loop per row and direction, psi values in registers.
// `a`, `b` point at channel 0 of the row, channels `hw` apart; `step` is the neighbour's offset
// (w: next row, x-direction; 1: next column, y-direction).

// out[j * 3 + i] += sum over q of psi(da_j)^2 psi(db_i)^2
inline void pair_sums3(const float* a, const float* b, int64_t hw, int64_t step, int64_t len,
                       double* out) {
    const float *a0 = a, *a1 = a + hw, *a2 = a + 2 * hw, *b0 = b, *b1 = b + hw, *b2 = b + 2 * hw;
    float s00 = 0, s01 = 0, s02 = 0, s10 = 0, s11 = 0, s12 = 0, s20 = 0, s21 = 0, s22 = 0;
#pragma omp simd reduction(+ : s00, s01, s02, s10, s11, s12, s20, s21, s22)
    for (int64_t q = 0; q < len; ++q) {
        const float t0 = psi(a0[q + step] - a0[q]), t1 = psi(a1[q + step] - a1[q]), t2 = psi(a2[q + step] - a2[q]);
        const float u0 = psi(b0[q + step] - b0[q]), u1 = psi(b1[q + step] - b1[q]), u2 = psi(b2[q + step] - b2[q]);
        const float p0 = t0 * t0, p1 = t1 * t1, p2 = t2 * t2, r0 = u0 * u0, r1 = u1 * u1, r2 = u2 * u2;
        s00 += p0 * r0; s01 += p0 * r1; s02 += p0 * r2;
        s10 += p1 * r0; s11 += p1 * r1; s12 += p1 * r2;
        s20 += p2 * r0; s21 += p2 * r1; s22 += p2 * r2;
    }
    out[0] += s00; out[1] += s01; out[2] += s02;
    out[3] += s10; out[4] += s11; out[5] += s12;
    out[6] += s20; out[7] += s21; out[8] += s22;
}

// Ga_j[q] = dP/dg(a_j) sum_i K_ji Pb_i,  Gb_i[q] = dP/dg(b_i) sum_j K_ji Pa_j  (dP/dg = psi (1 - psi^2))
inline void pair_grads3(const float* a, const float* b, int64_t hw, int64_t step, int64_t len,
                        const float* K, float* Ga, float* Gb, int64_t gstride) {
    const float *a0 = a, *a1 = a + hw, *a2 = a + 2 * hw, *b0 = b, *b1 = b + hw, *b2 = b + 2 * hw;
    const float k00 = K[0], k01 = K[1], k02 = K[2], k10 = K[3], k11 = K[4], k12 = K[5];
    const float k20 = K[6], k21 = K[7], k22 = K[8];
    float *ga0 = Ga, *ga1 = Ga + gstride, *ga2 = Ga + 2 * gstride;
    float *gb0 = Gb, *gb1 = Gb + gstride, *gb2 = Gb + 2 * gstride;
#pragma omp simd
    for (int64_t q = 0; q < len; ++q) {
        const float t0 = psi(a0[q + step] - a0[q]), t1 = psi(a1[q + step] - a1[q]), t2 = psi(a2[q + step] - a2[q]);
        const float u0 = psi(b0[q + step] - b0[q]), u1 = psi(b1[q + step] - b1[q]), u2 = psi(b2[q + step] - b2[q]);
        const float p0 = t0 * t0, p1 = t1 * t1, p2 = t2 * t2, r0 = u0 * u0, r1 = u1 * u1, r2 = u2 * u2;
        ga0[q] = t0 * (1.0f - p0) * (k00 * r0 + k01 * r1 + k02 * r2);
        ga1[q] = t1 * (1.0f - p1) * (k10 * r0 + k11 * r1 + k12 * r2);
        ga2[q] = t2 * (1.0f - p2) * (k20 * r0 + k21 * r1 + k22 * r2);
        gb0[q] = u0 * (1.0f - r0) * (k00 * p0 + k10 * p1 + k20 * p2);
        gb1[q] = u1 * (1.0f - r1) * (k01 * p0 + k11 * p1 + k21 * p2);
        gb2[q] = u2 * (1.0f - r2) * (k02 * p0 + k12 * p1 + k22 * p2);
    }
}

}  // namespace

void avg_pool2(const float* x, float* y, int64_t nc, int64_t h, int64_t w, int threads) {
    const int64_t ho = h / 2, wo = w / 2;
#pragma omp parallel for num_threads(threads) schedule(static) collapse(2)
    for (int64_t p = 0; p < nc; ++p) {
        for (int64_t r = 0; r < ho; ++r) {
            const float* x0 = x + (p * h + 2 * r) * w;
            const float* x1 = x0 + w;
            float* out = y + (p * ho + r) * wo;
#pragma omp simd
            for (int64_t q = 0; q < wo; ++q)
                out[q] = 0.25f * ((x0[2 * q] + x0[2 * q + 1]) + (x1[2 * q] + x1[2 * q + 1]));
        }
    }
}

void excl_means(const float* a, const float* b, float* out, int64_t n, int64_t c, int64_t h,
                int64_t w, int threads) {
    const int64_t chunks = (h + kRowsFwd - 1) / kRowsFwd, jobs = n * chunks, cc = c * c;
    // per job: c*c x-sums then c*c y-sums, in double; reduced in a fixed order below
    std::vector<double> part(static_cast<size_t>(jobs * 2 * cc), 0.0);
    const int64_t hw = h * w;
#pragma omp parallel num_threads(threads)
    {
        std::vector<float> buf(static_cast<size_t>(4 * c * w));
        float *Pax = buf.data(), *Qbx = Pax + c * w, *Pay = Qbx + c * w, *Qby = Pay + c * w;
#pragma omp for schedule(static)
        for (int64_t job = 0; job < jobs; ++job) {
            const int64_t item = job / chunks, r0 = (job % chunks) * kRowsFwd;
            const int64_t r1 = r0 + kRowsFwd < h ? r0 + kRowsFwd : h;
            double* sx = part.data() + job * 2 * cc;
            double* sy = sx + cc;
            for (int64_t r = r0; r < r1; ++r) {
                const bool has_x = r < h - 1;
                if (c == 3) {
                    const float *ar = a + item * 3 * hw + r * w, *br = b + item * 3 * hw + r * w;
                    if (has_x) pair_sums3(ar, br, hw, w, w, sx);
                    pair_sums3(ar, br, hw, 1, w - 1, sy);
                    continue;
                }
                for (int64_t ch = 0; ch < c; ++ch) {
                    const float* ar = a + (item * c + ch) * hw + r * w;
                    const float* br = b + (item * c + ch) * hw + r * w;
                    if (has_x) {
                        squash_row(ar, ar + w, Pax + ch * w, nullptr, w);
                        squash_row(br, br + w, Qbx + ch * w, nullptr, w);
                    }
                    squash_row(ar, ar + 1, Pay + ch * w, nullptr, w - 1);
                    squash_row(br, br + 1, Qby + ch * w, nullptr, w - 1);
                }
                for (int64_t j = 0; j < c; ++j) {
                    for (int64_t i = 0; i < c; ++i) {
                        if (has_x) sx[j * c + i] += dot(Pax + j * w, Qbx + i * w, w);
                        sy[j * c + i] += dot(Pay + j * w, Qby + i * w, w - 1);
                    }
                }
            }
        }
    }
    const double inv_x = 1.0 / static_cast<double>((h - 1) * w);
    const double inv_y = 1.0 / static_cast<double>(h * (w - 1));
    for (int64_t item = 0; item < n; ++item) {
        for (int64_t e = 0; e < 2 * cc; ++e) {
            double s = 0.0;
            for (int64_t k = 0; k < chunks; ++k) s += part[static_cast<size_t>((item * chunks + k) * 2 * cc + e)];
            out[item * 2 * cc + e] = static_cast<float>(s * (e < cc ? inv_x : inv_y));
        }
    }
}

void excl_grad(const float* a, const float* b, const float* k, const float* gup_a,
               const float* gup_b, int64_t hc, int64_t wc, float* ga, float* gb, int64_t n,
               int64_t c, int64_t h, int64_t w, int threads) {
    const int64_t chunks = (h + kRowsBwd - 1) / kRowsBwd, jobs = n * chunks, cc = c * c;
    const int64_t hw = h * w, wp = w + 1;  // y-gradient rows are padded: G[0] = G[w] = 0
    // k is dLoss/d(mean); the mean is the sum over (h-1) w (x) or h (w-1) (y) positions
    std::vector<float> ks(static_cast<size_t>(n * 2 * cc));
    const float inv_x = 1.0f / static_cast<float>((h - 1) * w), inv_y = 1.0f / static_cast<float>(h * (w - 1));
    for (int64_t e = 0; e < n * 2 * cc; ++e) ks[static_cast<size_t>(e)] = k[e] * ((e % (2 * cc)) < cc ? inv_x : inv_y);
    k = ks.data();
#pragma omp parallel num_threads(threads)
    {
        // P, D of a and b for one direction (c x w each), x-grads of two rows, y-grads, one up row
        std::vector<float> buf(static_cast<size_t>(4 * c * w + 4 * c * w + 2 * c * wp + 2 * w));
        float *Pa = buf.data(), *Da = Pa + c * w, *Qb = Da + c * w, *Db = Qb + c * w;
        float *GaxP = Db + c * w, *GbxP = GaxP + c * w, *GaxC = GbxP + c * w, *GbxC = GaxC + c * w;
        float *Gay = GbxC + c * w, *Gby = Gay + c * wp, *upa = Gby + c * wp, *upb = upa + w;

        // x-gradients of row r (zero on the last row, which has no gx)
        auto x_grads = [&](int64_t item, int64_t r, float* Ga, float* Gb) {
            if (r < 0 || r >= h - 1) {
                std::memset(Ga, 0, sizeof(float) * c * w);
                std::memset(Gb, 0, sizeof(float) * c * w);
                return;
            }
            if (c == 3) {
                pair_grads3(a + item * 3 * hw + r * w, b + item * 3 * hw + r * w, hw, w, w,
                            k + item * 2 * cc, Ga, Gb, w);
                return;
            }
            for (int64_t ch = 0; ch < c; ++ch) {
                const float* ar = a + (item * c + ch) * hw + r * w;
                const float* br = b + (item * c + ch) * hw + r * w;
                squash_row(ar, ar + w, Pa + ch * w, Da + ch * w, w);
                squash_row(br, br + w, Qb + ch * w, Db + ch * w, w);
            }
            pair_grads_any(Pa, Da, Qb, Db, k + item * 2 * cc, c, w, w, Ga, Gb, w);
        };

#pragma omp for schedule(static)
        for (int64_t job = 0; job < jobs; ++job) {
            const int64_t item = job / chunks, r0 = (job % chunks) * kRowsBwd;
            const int64_t r1 = r0 + kRowsBwd < h ? r0 + kRowsBwd : h;
            float *prev_a = GaxP, *prev_b = GbxP, *cur_a = GaxC, *cur_b = GbxC;
            x_grads(item, r0 - 1, prev_a, prev_b);
            for (int64_t r = r0; r < r1; ++r) {
                x_grads(item, r, cur_a, cur_b);
                // y-gradients of row r at positions 1..w-1 of the padded rows
                if (c == 3) {
                    pair_grads3(a + item * 3 * hw + r * w, b + item * 3 * hw + r * w, hw, 1, w - 1,
                                k + item * 2 * cc + cc, Gay + 1, Gby + 1, wp);
                } else {
                    for (int64_t ch = 0; ch < c; ++ch) {
                        const float* ar = a + (item * c + ch) * hw + r * w;
                        const float* br = b + (item * c + ch) * hw + r * w;
                        squash_row(ar, ar + 1, Pa + ch * w, Da + ch * w, w - 1);
                        squash_row(br, br + 1, Qb + ch * w, Db + ch * w, w - 1);
                    }
                    pair_grads_any(Pa, Da, Qb, Db, k + item * 2 * cc + cc, c, w, w - 1, Gay + 1, Gby + 1, wp);
                }
                for (int64_t ch = 0; ch < c; ++ch) {
                    Gay[ch * wp] = Gay[ch * wp + w] = 0.0f;
                    Gby[ch * wp] = Gby[ch * wp + w] = 0.0f;
                }
                const bool up = gup_a && r / 2 < hc;
                for (int64_t ch = 0; ch < c; ++ch) {
                    // the coarser level's gradient, a quarter to each of the 2x2 pixels it pooled
                    if (up) {
                        const float* ua = gup_a + ((item * c + ch) * hc + r / 2) * wc;
                        const float* ub = gup_b + ((item * c + ch) * hc + r / 2) * wc;
                        spread_row(ua, wc, upa, w);
                        spread_row(ub, wc, upb, w);
                    } else {
                        std::memset(upa, 0, sizeof(float) * 2 * w);
                    }
                    const float *pa = prev_a + ch * w, *ca = cur_a + ch * w, *ya = Gay + ch * wp;
                    const float *pb = prev_b + ch * w, *cb = cur_b + ch * w, *yb = Gby + ch * wp;
                    float* oa = ga + (item * c + ch) * hw + r * w;
                    float* ob = gb + (item * c + ch) * hw + r * w;
#pragma omp simd
                    for (int64_t q = 0; q < w; ++q) {
                        oa[q] = (pa[q] - ca[q]) + (ya[q] - ya[q + 1]) + upa[q];
                        ob[q] = (pb[q] - cb[q]) + (yb[q] - yb[q + 1]) + upb[q];
                    }
                }
                float* t = prev_a; prev_a = cur_a; cur_a = t;
                t = prev_b; prev_b = cur_b; cur_b = t;
            }
        }
    }
}

}  // namespace dd
