// Training-mode BatchNorm fused with the LeakyReLU that follows it, channels-last float32.
//
// x is a rows x c row-major matrix (an N x C x H x W channels-last tensor: rows = N*H*W). Per
// channel j over the rows: mean, biased variance var, invstd = 1 / sqrt(var + eps);
//     z = (x - mean) * (invstd * gamma) + beta,   y = z > 0 ? z : slope * z   (act; else y = z).
// Backward, with gz = dL/dz = g * (z > 0 ? 1 : slope):
//     dbeta = sum gz,   dgamma = invstd * sum gz (x - mean),
//     dx = gamma invstd (gz - dbeta / M - (x - mean) invstd dgamma / M),      M = rows.
// Memory passes over the M x c data: forward, one read for the statistics and one read + write for
// y; backward, one read of (g, x) for the two sums and one read of (g, x) + write of dx. The sign
// of z is recomputed from x in the backward (same expression, same rounding), so y is not read.
// PyTorch's BatchNorm + in-place LeakyReLU make two more passes each way and read y.
//
// Few channels: a row of c floats is too short a vector loop, so every pass works on spans of R
// rows (R * c >= kSpan floats, contiguous) with the per-channel coefficients tiled R times.
//
// Accuracy: sums are taken in float over blocks of kBlock spans, then added in double. The
// variance comes from sums of (x - K), K = the first row (shifted data): the cancellation in
// E[(x-K)^2] - E[x-K]^2 is then set by (mean - K)^2 / var, about 1, not by mean^2 / var.
#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#else  // built without OpenMP: one thread
static inline int omp_get_thread_num() { return 0; }
static inline int omp_get_num_threads() { return 1; }
#endif

#include "kernels.h"

namespace dd {
namespace {

constexpr int64_t kSpan = 128;  // floats per vector loop, at least
constexpr int64_t kBlock = 16;  // spans summed in float (each position: kBlock terms) before double

struct Layout {
    int64_t c, reps, width, spans, tail_rows;  // width = reps * c; rows = spans * reps + tail_rows
    Layout(int64_t rows, int64_t c_) : c(c_) {
        reps = std::max<int64_t>(1, kSpan / c);
        width = reps * c;
        spans = rows / reps;
        tail_rows = rows - spans * reps;
    }
    std::vector<float> tile(const std::vector<float>& v) const {
        std::vector<float> t(static_cast<size_t>(width));
        for (int64_t i = 0; i < width; ++i) t[i] = v[i % c];
        return t;
    }
};

// The two per-position sums of the forward's statistics over one span: x - K and (x - K)^2.
struct ShiftedMoments {
    const float* __restrict x;
    const float* __restrict k;  // K tiled over a span
    void operator()(int64_t base, int64_t len, float* __restrict s1, float* __restrict s2) const {
        // members copied to locals: a store through s1 could otherwise alias them
        const float* __restrict xs = x + base;
        const float* __restrict ks = k;
#pragma omp simd
        for (int64_t p = 0; p < len; ++p) {
            const float d = xs[p] - ks[p];
            s1[p] += d;
            s2[p] += d * d;
        }
    }
};

// The backward's two per-position sums over one span: gz and gz (x - mu), gz = g act'(z).
template <bool kAct>
struct GradMoments {
    const float* __restrict g;
    const float* __restrict x;
    const float* __restrict mu;
    const float* __restrict scale;
    const float* __restrict beta;
    float slope;
    void operator()(int64_t base, int64_t len, float* __restrict s1, float* __restrict s2) const {
        const float* __restrict gs = g + base;
        const float* __restrict xs = x + base;
        const float* __restrict m = mu;
        const float* __restrict sc = scale;
        const float* __restrict b = beta;
        const float sl = slope;
#pragma omp simd
        for (int64_t p = 0; p < len; ++p) {
            const float d = xs[p] - m[p];
            const float gz = kAct ? gs[p] * ((d * sc[p] + b[p]) > 0.0f ? 1.0f : sl) : gs[p];
            s1[p] += gz;
            s2[p] += gz * d;
        }
    }
};

// Sums over spans [s0, s1) of what f adds per position, taken in float over kBlock spans at a
// time and then added into out1, out2 (double, length width).
template <typename F>
void span_sums(const Layout& L, int64_t s0, int64_t s1, const F& f, double* out1, double* out2) {
    const int64_t w = L.width;
    std::vector<float> b1(w), b2(w);
    for (int64_t start = s0; start < s1; start += kBlock) {
        const int64_t stop = std::min(s1, start + kBlock);
        std::fill(b1.begin(), b1.end(), 0.0f);
        std::fill(b2.begin(), b2.end(), 0.0f);
        for (int64_t s = start; s < stop; ++s) f(s * w, w, b1.data(), b2.data());
        for (int64_t p = 0; p < w; ++p) {
            out1[p] += b1[p];
            out2[p] += b2[p];
        }
    }
}

// Per-channel sums (s1, s2, double, length c) over all rows. The spans are split over the team;
// partial sums are added in thread order (deterministic for a given thread count).
template <typename F>
void channel_sums(const Layout& L, int threads, const F& f, std::vector<double>& s1, std::vector<double>& s2) {
    const int64_t w = L.width, c = L.c;
    const int team = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, L.spans / kBlock)));
    std::vector<double> part(static_cast<size_t>(2 * team * w), 0.0);
#pragma omp parallel num_threads(team)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        span_sums(L, L.spans * t / n, L.spans * (t + 1) / n, f, &part[static_cast<size_t>(2 * t * w)],
                  &part[static_cast<size_t>((2 * t + 1) * w)]);
    }
    s1.assign(static_cast<size_t>(c), 0.0);
    s2.assign(static_cast<size_t>(c), 0.0);
    for (int t = 0; t < team; ++t)
        for (int64_t p = 0; p < w; ++p) {
            s1[p % c] += part[static_cast<size_t>(2 * t * w + p)];
            s2[p % c] += part[static_cast<size_t>((2 * t + 1) * w + p)];
        }
    const int64_t tail = L.tail_rows * c;  // the last rows, fewer than one span
    if (tail) {
        std::vector<float> b1(tail, 0.0f), b2(tail, 0.0f);
        f(L.spans * w, tail, b1.data(), b2.data());
        for (int64_t p = 0; p < tail; ++p) {
            s1[p % c] += b1[p];
            s2[p % c] += b2[p];
        }
    }
}

// y = act(z), z = (x - mu) * scale + beta, over spans (coefficients tiled over a span), then the tail.
// Explicit loops on __restrict locals with the activation a template flag: written through a
// lambda, GCC kept a scalar fallback loop, and that is the one that ran.
template <bool kAct>
void normalize(const Layout& L, const float* __restrict x, const float* __restrict mu, const float* __restrict scale,
               const float* __restrict beta, float slope, float* __restrict y, int threads) {
    const int64_t w = L.width, n = L.spans * w + L.tail_rows * L.c;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t s = 0; s < L.spans + (L.tail_rows > 0); ++s) {
        const int64_t base = s * w, len = std::min(w, n - base);
        const float* __restrict xs = x + base;
        float* __restrict ys = y + base;
#pragma omp simd
        for (int64_t p = 0; p < len; ++p) {
            const float z = (xs[p] - mu[p]) * scale[p] + beta[p];
            ys[p] = kAct ? z * (z > 0.0f ? 1.0f : slope) : z;
        }
    }
}

// dx = a gz + b (x - mu) + o, gz = g * act'(z), z recomputed as in normalize.
template <bool kAct>
void input_grad(const Layout& L, const float* __restrict g, const float* __restrict x, const float* __restrict mu,
                const float* __restrict scale, const float* __restrict beta, const float* __restrict a,
                const float* __restrict b, const float* __restrict o, float slope, float* __restrict dx, int threads) {
    const int64_t w = L.width, n = L.spans * w + L.tail_rows * L.c;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t s = 0; s < L.spans + (L.tail_rows > 0); ++s) {
        const int64_t base = s * w, len = std::min(w, n - base);
        const float* __restrict gs = g + base;
        const float* __restrict xs = x + base;
        float* __restrict ds = dx + base;
#pragma omp simd
        for (int64_t p = 0; p < len; ++p) {
            const float d = xs[p] - mu[p];
            const float gz = kAct ? gs[p] * ((d * scale[p] + beta[p]) > 0.0f ? 1.0f : slope) : gs[p];
            ds[p] = a[p] * gz + b[p] * d + o[p];
        }
    }
}

}  // namespace

void bn_act_fwd(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                float* invstd, float* running_mean, float* running_var, int64_t rows, int64_t c,
                float eps, float momentum, bool act, float slope, int threads) {
    const Layout L(rows, c);
    std::vector<float> shift(x, x + c);  // K: the first row
    const std::vector<float> kt = L.tile(shift);
    const float* __restrict k = kt.data();
    std::vector<double> s1, s2;
    channel_sums(L, threads, ShiftedMoments{x, k}, s1, s2);
    std::vector<float> mu(c), scale(c), b(c);
    const double m = static_cast<double>(rows);
    for (int64_t j = 0; j < c; ++j) {
        const double dm = s1[j] / m;
        const double var = std::max(0.0, s2[j] / m - dm * dm);
        const double mean_j = shift[j] + dm;
        const double is = 1.0 / std::sqrt(var + static_cast<double>(eps));
        mean[j] = mu[j] = static_cast<float>(mean_j);
        invstd[j] = static_cast<float>(is);
        scale[j] = static_cast<float>(gamma[j] * is);
        b[j] = beta[j];
        if (running_mean)
            running_mean[j] = static_cast<float>((1.0 - momentum) * running_mean[j] + momentum * mean_j);
        if (running_var && rows > 1)
            running_var[j] =
                static_cast<float>((1.0 - momentum) * running_var[j] + momentum * var * m / (m - 1.0));
    }
    const std::vector<float> mut = L.tile(mu), sct = L.tile(scale), bt = L.tile(b);
    const float* __restrict mp = mut.data();
    const float* __restrict sp = sct.data();
    const float* __restrict bp = bt.data();
    if (act)
        normalize<true>(L, x, mp, sp, bp, slope, y, threads);
    else
        normalize<false>(L, x, mp, sp, bp, slope, y, threads);
}

void bn_act_bwd(const float* g, const float* x, const float* mean, const float* invstd,
                const float* gamma, const float* beta, float* dx, float* dgamma, float* dbeta,
                int64_t rows, int64_t c, bool act, float slope, int threads) {
    const Layout L(rows, c);
    std::vector<float> mu(mean, mean + c), scale(c), b(beta, beta + c);
    for (int64_t j = 0; j < c; ++j)  // the forward's float scale, so that z (and its sign) match
        scale[j] = static_cast<float>(static_cast<double>(gamma[j]) * static_cast<double>(invstd[j]));
    const std::vector<float> mut = L.tile(mu), sct = L.tile(scale), bt = L.tile(b);
    const float* __restrict mp = mut.data();
    const float* __restrict sp = sct.data();
    const float* __restrict bp = bt.data();
    std::vector<double> s1, s2;
    if (act)
        channel_sums(L, threads, GradMoments<true>{g, x, mp, sp, bp, slope}, s1, s2);
    else
        channel_sums(L, threads, GradMoments<false>{g, x, mp, sp, bp, slope}, s1, s2);
    std::vector<float> k1(c), k2(c), k3(c);
    const double m = static_cast<double>(rows);
    for (int64_t j = 0; j < c; ++j) {
        const double is = invstd[j], db = s1[j], dg = s2[j] * is;
        dbeta[j] = static_cast<float>(db);
        dgamma[j] = static_cast<float>(dg);
        const double a = gamma[j] * is;
        k1[j] = static_cast<float>(a);
        k2[j] = static_cast<float>(-a * is * dg / m);  // coefficient of (x - mean)
        k3[j] = static_cast<float>(-a * db / m);
    }
    const std::vector<float> k1t = L.tile(k1), k2t = L.tile(k2), k3t = L.tile(k3);
    const float* __restrict a = k1t.data();
    const float* __restrict bb = k2t.data();
    const float* __restrict o = k3t.data();
    if (act)
        input_grad<true>(L, g, x, mp, sp, bp, a, bb, o, slope, dx, threads);
    else
        input_grad<false>(L, g, x, mp, sp, bp, a, bb, o, slope, dx, threads);
}

}  // namespace dd
