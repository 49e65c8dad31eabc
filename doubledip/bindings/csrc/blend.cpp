// Mask blend fused with the L1 / MSE reconstruction loss, forward and backward.
//
// y = b + m (a - b)  (= m a + (1 - m) b; mode none: y = a + b),  d = y - t,
// loss = sum(|d|) or sum(d^2) (the caller divides by the element count).
// Backward, with g = dLoss/dd = scale * sign(d) (L1; sign(0) = 0 as torch's abs) or scale * 2 d:
//   dL/da = g m,  dL/db = g (1 - m),  dL/dt = -g,  dL/dm = g (a - b), summed over what m broadcasts.
// Work is split into (item, chunk of kChunk pixels) jobs; a chunk's rows of every input stay in L1.
#include <cmath>
#include <vector>

#include "kernels.h"

namespace dd {
namespace {

constexpr int64_t kChunk = 1024;

struct Job {
    int64_t item, p0, len;
};

inline Job job_of(int64_t job, int64_t nchunk, int64_t hw) {
    const int64_t p0 = (job % nchunk) * kChunk;
    return {job / nchunk, p0, hw - p0 < kChunk ? hw - p0 : kChunk};
}

// Blended value at p, for the mask pointer already offset to this chunk (or the item's scalar).
template <int MODE>
inline float blended(const float* A, const float* B, const float* M, float mv, int64_t p) {
    if (MODE == kMaskNone) return A[p] + B[p];
    const float m = (MODE == kMaskItem) ? mv : M[p];
    return B[p] + m * (A[p] - B[p]);
}

template <int MODE, bool MSE>
double fwd_impl(const float* m, const float* a, const float* b, const float* t, int64_t n, int64_t c,
                int64_t hw, int64_t m_stride, int threads) {
    const int64_t nchunk = (hw + kChunk - 1) / kChunk, jobs = n * nchunk;
    std::vector<double> part(static_cast<size_t>(jobs));
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t job = 0; job < jobs; ++job) {
        const Job j = job_of(job, nchunk, hw);
        const float mv = (MODE == kMaskItem) ? m[j.item * m_stride] : 0.0f;
        double acc = 0.0;
        for (int64_t ch = 0; ch < c; ++ch) {
            const int64_t base = (j.item * c + ch) * hw + j.p0;
            const float* M = MODE == kMaskPixel ? m + j.item * hw + j.p0 : (MODE == kMaskFull ? m + base : nullptr);
            const float *A = a + base, *B = b + base, *T = t + base;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t p = 0; p < j.len; ++p) {
                const float d = blended<MODE>(A, B, M, mv, p) - T[p];
                s += MSE ? d * d : std::fabs(d);
            }
            acc += s;
        }
        part[static_cast<size_t>(job)] = acc;
    }
    double total = 0.0;  // summed in a fixed order: the same value for any thread count
    for (double v : part) total += v;
    return total;
}

template <int MODE, bool MSE>
void bwd_impl(const float* m, const float* a, const float* b, const float* t, float* gm, float* ga,
              float* gb, float* gt, int64_t n, int64_t c, int64_t hw, int64_t m_stride, float scale,
              int threads) {
    const int64_t nchunk = (hw + kChunk - 1) / kChunk, jobs = n * nchunk;
    std::vector<double> item_part(MODE == kMaskItem && gm ? static_cast<size_t>(jobs) : 0);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t job = 0; job < jobs; ++job) {
        const Job j = job_of(job, nchunk, hw);
        const float mv = (MODE == kMaskItem) ? m[j.item * m_stride] : 0.0f;
        float g[kChunk];
        double item_acc = 0.0;
        for (int64_t ch = 0; ch < c; ++ch) {
            const int64_t base = (j.item * c + ch) * hw + j.p0;
            const float* M = MODE == kMaskPixel ? m + j.item * hw + j.p0 : (MODE == kMaskFull ? m + base : nullptr);
            const float *A = a + base, *B = b + base, *T = t + base;
#pragma omp simd
            for (int64_t p = 0; p < j.len; ++p) {
                const float d = blended<MODE>(A, B, M, mv, p) - T[p];
                g[p] = MSE ? 2.0f * scale * d : (d > 0.0f ? scale : (d < 0.0f ? -scale : 0.0f));
            }
            if (ga) {
                float* GA = ga + base;
#pragma omp simd
                for (int64_t p = 0; p < j.len; ++p)
                    GA[p] = MODE == kMaskNone ? g[p] : g[p] * (MODE == kMaskItem ? mv : M[p]);
            }
            if (gb) {
                float* GB = gb + base;
#pragma omp simd
                for (int64_t p = 0; p < j.len; ++p)
                    GB[p] = MODE == kMaskNone ? g[p] : g[p] * (1.0f - (MODE == kMaskItem ? mv : M[p]));
            }
            if (gt) {
                float* GT = gt + base;
#pragma omp simd
                for (int64_t p = 0; p < j.len; ++p) GT[p] = -g[p];
            }
            if (gm && MODE == kMaskFull) {
                float* GM = gm + base;
#pragma omp simd
                for (int64_t p = 0; p < j.len; ++p) GM[p] = g[p] * (A[p] - B[p]);
            } else if (gm && MODE == kMaskPixel) {
                // the mask broadcasts over channels: its gradient sums them
                float* GM = gm + j.item * hw + j.p0;
                if (ch == 0) {
#pragma omp simd
                    for (int64_t p = 0; p < j.len; ++p) GM[p] = g[p] * (A[p] - B[p]);
                } else {
#pragma omp simd
                    for (int64_t p = 0; p < j.len; ++p) GM[p] += g[p] * (A[p] - B[p]);
                }
            } else if (gm && MODE == kMaskItem) {
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int64_t p = 0; p < j.len; ++p) s += g[p] * (A[p] - B[p]);
                item_acc += s;
            }
        }
        if (MODE == kMaskItem && gm) item_part[static_cast<size_t>(job)] = item_acc;
    }
    if (MODE == kMaskItem && gm) {
        for (int64_t i = 0; i < n; ++i) {
            double s = 0.0;
            for (int64_t k = 0; k < nchunk; ++k) s += item_part[static_cast<size_t>(i * nchunk + k)];
            gm[i] = static_cast<float>(s);
        }
    }
}

template <bool MSE>
double fwd_mode(int mode, const float* m, const float* a, const float* b, const float* t, int64_t n,
                int64_t c, int64_t hw, int64_t ms, int th) {
    switch (mode) {
        case kMaskItem: return fwd_impl<kMaskItem, MSE>(m, a, b, t, n, c, hw, ms, th);
        case kMaskPixel: return fwd_impl<kMaskPixel, MSE>(m, a, b, t, n, c, hw, ms, th);
        case kMaskFull: return fwd_impl<kMaskFull, MSE>(m, a, b, t, n, c, hw, ms, th);
        default: return fwd_impl<kMaskNone, MSE>(m, a, b, t, n, c, hw, ms, th);
    }
}

template <bool MSE>
void bwd_mode(int mode, const float* m, const float* a, const float* b, const float* t, float* gm,
              float* ga, float* gb, float* gt, int64_t n, int64_t c, int64_t hw, int64_t ms, float s,
              int th) {
    switch (mode) {
        case kMaskItem: return bwd_impl<kMaskItem, MSE>(m, a, b, t, gm, ga, gb, gt, n, c, hw, ms, s, th);
        case kMaskPixel: return bwd_impl<kMaskPixel, MSE>(m, a, b, t, gm, ga, gb, gt, n, c, hw, ms, s, th);
        case kMaskFull: return bwd_impl<kMaskFull, MSE>(m, a, b, t, gm, ga, gb, gt, n, c, hw, ms, s, th);
        default: return bwd_impl<kMaskNone, MSE>(m, a, b, t, nullptr, ga, gb, gt, n, c, hw, ms, s, th);
    }
}

}  // namespace

double blend_fwd(const float* m, const float* a, const float* b, const float* t, int64_t n,
                 int64_t c, int64_t hw, int mode, int64_t m_stride, bool mse, int threads) {
    return mse ? fwd_mode<true>(mode, m, a, b, t, n, c, hw, m_stride, threads)
               : fwd_mode<false>(mode, m, a, b, t, n, c, hw, m_stride, threads);
}

void blend_bwd(const float* m, const float* a, const float* b, const float* t, float* gm, float* ga,
               float* gb, float* gt, int64_t n, int64_t c, int64_t hw, int mode, int64_t m_stride,
               bool mse, float scale, int threads) {
    if (mse)
        bwd_mode<true>(mode, m, a, b, t, gm, ga, gb, gt, n, c, hw, m_stride, scale, threads);
    else
        bwd_mode<false>(mode, m, a, b, t, gm, ga, gb, gt, n, c, hw, m_stride, scale, threads);
}

}  // namespace dd
