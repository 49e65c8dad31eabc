// The fused CPU steps of doubledip (no torch headers: plain pointers, float32, contiguous NCHW).
// Each function takes `threads`, the OpenMP team size (the caller passes torch's thread count).
#pragma once

#include <cstdint>

namespace dd {

// Blend modes for the mask: none (a + b), one scalar per item (m_stride 0: one for all),
// one value per pixel (N x 1 x H x W), one per element (N x C x H x W).
enum BlendMode { kMaskNone = 0, kMaskItem = 1, kMaskPixel = 2, kMaskFull = 3 };

// Sum over all elements of |y - t| (mse: (y - t)^2), y = b + m (a - b) (mode none: a + b).
double blend_fwd(const float* m, const float* a, const float* b, const float* t, int64_t n,
                 int64_t c, int64_t hw, int mode, int64_t m_stride, bool mse, int threads);

// Gradients of scale * sum(loss(y - t)); any output pointer may be null (not needed).
// gm holds one value per item in mode kMaskItem, else the mask's own shape.
void blend_bwd(const float* m, const float* a, const float* b, const float* t, float* gm, float* ga,
               float* gb, float* gt, int64_t n, int64_t c, int64_t hw, int mode, int64_t m_stride,
               bool mse, float scale, int threads);

// 2x2 average pool (floor), x: nc x h x w -> y: nc x (h/2) x (w/2).
void avg_pool2(const float* x, float* y, int64_t nc, int64_t h, int64_t w, int threads);

// One pyramid level of the exclusion loss: out (n x 2 x c x c) = for x then y, the spatial mean of
// psi(grad a_j)^2 psi(grad b_i)^2 for every channel pair (j, i).
void excl_means(const float* a, const float* b, float* out, int64_t n, int64_t c, int64_t h,
                int64_t w, int threads);

// Gradient of one level: k (n x 2 x c x c) = dLoss / d(the means that excl_means returns),
// for x then y. gup_a/gup_b (n x c x hc x wc, or null) are the next coarser level's total gradients,
// spread back through its 2x2 average pool (each fine pixel gets a quarter).
void excl_grad(const float* a, const float* b, const float* k, const float* gup_a,
               const float* gup_b, int64_t hc, int64_t wc, float* ga, float* gb, int64_t n,
               int64_t c, int64_t h, int64_t w, int threads);

// out = z + sigma * N(0, 1), Philox4x32-10 keyed by seed, counter = element index / 4.
void perturb(const float* z, float* out, int64_t numel, float sigma, uint64_t seed, int threads);

// One Adam step (no weight decay, IEEE sqrt) over `count` dense float32 tensors: tensor j is the `sizes[j]`
// elements at params[j], grads[j], exp_avgs[j], exp_avg_sqs[j] (one layout for all four), updated
// in place. The scalars in double, rounded to float inside as torch rounds Scalars:
// weight1 = 1 - beta1, value2 = 1 - beta2, bias2_sqrt = sqrt(1 - beta2^t),
// neg_step_size = -lr / (1 - beta1^t).
void adam_step(float* const* params, const float* const* grads, float* const* exp_avgs,
               float* const* exp_avg_sqs, const int64_t* sizes, int64_t count, double weight1,
               double beta2, double value2, double bias2_sqrt, double eps, double neg_step_size,
               int threads);

// The same step in two passes around the caller's square root (see adam.cpp): adam_moments
// updates exp_avgs and exp_avg_sqs; adam_apply updates params from sqrts[j] = sqrt(exp_avg_sqs[j]).
void adam_moments(const float* const* grads, float* const* exp_avgs, float* const* exp_avg_sqs,
                  const int64_t* sizes, int64_t count, double weight1, double beta2, double value2,
                  int threads);
void adam_apply(float* const* params, const float* const* exp_avgs, const float* const* sqrts,
                const int64_t* sizes, int64_t count, double bias2_sqrt, double eps,
                double neg_step_size, int threads);

}  // namespace dd
