// Adam (torch.optim.Adam's defaults, no weight decay) over many float32 tensors in one pass.
//
// Per element, in the order and with the roundings of the torch._foreach_* path in
// doubledip/engine/adam.py, i.e. of torch's CPU kernels (lerp_, mul_, addcmul_, sqrt, div_, add_,
// addcdiv_), each a float32 result:
//   m <- fma(w1, g - m, m)                 lerp_(m, g, w1), w1 = 1 - b1 < 0.5: torch's vector and
//                                          scalar lerp both round once (FMA)
//   v <- fma(s2 * g, g, v * b2)            mul_(v, b2) then addcmul_(v, g, g, s2): torch's
//                                          `v + s2 * g * g` is contracted to one FMA
//   d <- sqrt(v) / c2 + eps                sqrt, div_ (a true division, not times 1 / c2), add_
//   p <- p + (ns * m) / d                  addcdiv_(p, m, d, ns): no FMA possible (a division)
// with w1, b2, s2 = 1 - b2, c2 = sqrt(1 - b2^t), eps and ns = -lr / (1 - b1^t) rounded from double
// to float, as torch rounds its Scalar arguments. Without a hardware FMA (a baseline x86-64 build,
// DOUBLEDIP_NATIVE=0) the two FMAs become a multiply and an add (a software fma is far slower):
// then results differ from torch's FMA kernels by rounding only.
//
// The square root: adam_step takes the IEEE (correctly rounded) one. torch's CPU sqrt is that
// too on builds without MKL, but on MKL builds it is MKL VML's vsSqrt (HA mode: off by one ulp for
// about 0.6% of inputs), so for bit-equality there the caller splits the step around torch's own
// sqrt: adam_moments (m, v), torch.sqrt(v) into scratch buffers, adam_apply (p).
//
// One call updates a whole group of tensors: the elements of all of them, concatenated, are split
// into one equal range per thread, so a hundred small tensors cost no more than one large one.
// Elementwise, so the split never changes a result.
#include <cmath>

#include "kernels.h"

namespace dd {
namespace {

#if defined(FP_FAST_FMAF) || defined(__FMA__) || defined(__ARM_FEATURE_FMA)
inline float fmadd(float a, float b, float c) { return std::fma(a, b, c); }
#else
inline float fmadd(float a, float b, float c) { return a * b + c; }
#endif

struct AdamScalars {
    float w1, b2, s2, c2, eps, ns;
};

inline void adam_span(float* __restrict p, const float* __restrict g, float* __restrict m,
                      float* __restrict v, int64_t n, const AdamScalars k) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        const float gi = g[i];
        const float mi = fmadd(k.w1, gi - m[i], m[i]);
        const float vi = fmadd(k.s2 * gi, gi, v[i] * k.b2);
        const float d = std::sqrt(vi) / k.c2 + k.eps;
        p[i] = p[i] + (k.ns * mi) / d;
        m[i] = mi;
        v[i] = vi;
    }
}

inline void moments_span(const float* __restrict g, float* __restrict m, float* __restrict v,
                         int64_t n, const AdamScalars k) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        const float gi = g[i];
        m[i] = fmadd(k.w1, gi - m[i], m[i]);
        v[i] = fmadd(k.s2 * gi, gi, v[i] * k.b2);
    }
}

inline void apply_span(float* __restrict p, const float* __restrict m, const float* __restrict s,
                       int64_t n, const AdamScalars k) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) p[i] = p[i] + (k.ns * m[i]) / (s[i] / k.c2 + k.eps);
}

// Below this many elements in all, one thread does the work (a parallel region costs more).
constexpr int64_t kSerialElements = 1 << 15;
// Thread ranges start at multiples of this many elements (whole vectors where tensors are aligned).
constexpr int64_t kAlign = 64;

// span(j, offset, length) over the concatenation of count tensors of sizes[j] elements: one
// contiguous range of it per thread.
template <typename Span>
void for_spans(const int64_t* sizes, int64_t count, int threads, Span span) {
    int64_t total = 0;
    for (int64_t j = 0; j < count; ++j) total += sizes[j];
    if (threads <= 1 || total < kSerialElements) {
        for (int64_t j = 0; j < count; ++j) span(j, 0, sizes[j]);
        return;
    }
    const int64_t chunks = threads;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int64_t c = 0; c < chunks; ++c) {
        // this chunk's range [lo, hi) of the concatenated elements
        const int64_t lo = c == 0 ? 0 : (total * c / chunks) / kAlign * kAlign;
        const int64_t hi = c + 1 == chunks ? total : (total * (c + 1) / chunks) / kAlign * kAlign;
        int64_t start = 0;  // first element of tensor j in the concatenation
        for (int64_t j = 0; j < count && start < hi; start += sizes[j], ++j) {
            const int64_t a = lo > start ? lo - start : 0;
            const int64_t b = hi - start < sizes[j] ? hi - start : sizes[j];
            if (a < b) span(j, a, b - a);
        }
    }
}

AdamScalars scalars(double weight1, double beta2, double value2, double bias2_sqrt, double eps,
                    double neg_step_size) {
    return {static_cast<float>(weight1), static_cast<float>(beta2),
            static_cast<float>(value2),  static_cast<float>(bias2_sqrt),
            static_cast<float>(eps),     static_cast<float>(neg_step_size)};
}

}  // namespace

void adam_step(float* const* params, const float* const* grads, float* const* exp_avgs,
               float* const* exp_avg_sqs, const int64_t* sizes, int64_t count, double weight1,
               double beta2, double value2, double bias2_sqrt, double eps, double neg_step_size,
               int threads) {
    const AdamScalars k = scalars(weight1, beta2, value2, bias2_sqrt, eps, neg_step_size);
    for_spans(sizes, count, threads, [&](int64_t j, int64_t a, int64_t n) {
        adam_span(params[j] + a, grads[j] + a, exp_avgs[j] + a, exp_avg_sqs[j] + a, n, k);
    });
}

void adam_moments(const float* const* grads, float* const* exp_avgs, float* const* exp_avg_sqs,
                  const int64_t* sizes, int64_t count, double weight1, double beta2, double value2,
                  int threads) {
    const AdamScalars k = scalars(weight1, beta2, value2, 1.0, 0.0, 0.0);
    for_spans(sizes, count, threads, [&](int64_t j, int64_t a, int64_t n) {
        moments_span(grads[j] + a, exp_avgs[j] + a, exp_avg_sqs[j] + a, n, k);
    });
}

void adam_apply(float* const* params, const float* const* exp_avgs, const float* const* sqrts,
                const int64_t* sizes, int64_t count, double bias2_sqrt, double eps,
                double neg_step_size, int threads) {
    const AdamScalars k = scalars(0.0, 0.0, 0.0, bias2_sqrt, eps, neg_step_size);
    for_spans(sizes, count, threads, [&](int64_t j, int64_t a, int64_t n) {
        apply_span(params[j] + a, exp_avgs[j] + a, sqrts[j] + a, n, k);
    });
}

}  // namespace dd
