// The fused CPU steps of doubledip (no torch headers: plain pointers, float32, contiguous NCHW unless
// said: the generator layers are channels-last).
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

// Training-mode BatchNorm of a channels-last rows x c matrix (rows = N*H*W), then LeakyReLU(slope)
// when act; batch mean and invstd = 1/sqrt(biased var + eps) out (c each); the running statistics
// (null: none) updated as torch does (momentum, unbiased variance).
void bn_act_fwd(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                float* invstd, float* running_mean, float* running_var, int64_t rows, int64_t c,
                float eps, float momentum, bool act, float slope, int threads);

// Gradients of bn_act_fwd: dx (rows x c), dgamma, dbeta (c); the activation's sign is recomputed
// from x, so its output is not needed.
void bn_act_bwd(const float* g, const float* x, const float* mean, const float* invstd,
                const float* gamma, const float* beta, float* dx, float* dgamma, float* dbeta,
                int64_t rows, int64_t c, bool act, float slope, int threads);

// Reflection padding by p (< h, w) on all sides: x n x h x w x c -> y n x (h+2p) x (w+2p) x c,
// and its gradient (dy padded -> dx).
void reflect_pad_fwd(const float* x, float* y, int64_t n, int64_t h, int64_t w, int64_t c, int64_t p,
                     int threads);
void reflect_pad_bwd(const float* dy, float* dx, int64_t n, int64_t h, int64_t w, int64_t c, int64_t p,
                     int threads);

// Gradient of bilinear upsampling with align_corners=True, channels-last: g n x oh x ow x c ->
// dx n x ih x iw x c.
void upsample_bilinear_bwd(const float* g, float* dx, int64_t n, int64_t ih, int64_t iw, int64_t oh,
                           int64_t ow, int64_t c, int threads);

}  // namespace dd
