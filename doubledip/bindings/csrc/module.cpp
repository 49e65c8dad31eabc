// pybind11 bindings of the CPU core. Tensors travel as raw addresses (tensor.data_ptr()) plus
// shapes: the core has no torch headers. The Python side (doubledip/bindings/ops.py) checks dtype,
// device and contiguity before calling; these functions trust their arguments.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <vector>

#include "kernels.h"

namespace py = pybind11;

namespace {

template <typename T>
T* ptr(uintptr_t address) {
    return reinterpret_cast<T*>(address);
}

template <typename T>
std::vector<T*> ptrs(const std::vector<uintptr_t>& addresses) {
    std::vector<T*> out(addresses.size());
    for (size_t i = 0; i < addresses.size(); ++i) out[i] = ptr<T>(addresses[i]);
    return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "doubledip CPU core: fused blend loss, exclusion loss, perturbation (float32, NCHW) and Adam";
    auto nogil = py::call_guard<py::gil_scoped_release>();

    m.def("blend_fwd",
          [](uintptr_t m_, uintptr_t a, uintptr_t b, uintptr_t t, int64_t n, int64_t c, int64_t hw,
             int mode, int64_t m_stride, bool mse, int threads) {
              return dd::blend_fwd(ptr<const float>(m_), ptr<const float>(a), ptr<const float>(b),
                                   ptr<const float>(t), n, c, hw, mode, m_stride, mse, threads);
          },
          nogil, "Sum of the blend loss over all elements (address 0: absent mask).");
    m.def("blend_bwd",
          [](uintptr_t m_, uintptr_t a, uintptr_t b, uintptr_t t, uintptr_t gm, uintptr_t ga,
             uintptr_t gb, uintptr_t gt, int64_t n, int64_t c, int64_t hw, int mode, int64_t m_stride,
             bool mse, float scale, int threads) {
              dd::blend_bwd(ptr<const float>(m_), ptr<const float>(a), ptr<const float>(b),
                            ptr<const float>(t), ptr<float>(gm), ptr<float>(ga), ptr<float>(gb),
                            ptr<float>(gt), n, c, hw, mode, m_stride, mse, scale, threads);
          },
          nogil, "Gradients of the blend loss (address 0: not wanted).");
    m.def("avg_pool2",
          [](uintptr_t x, uintptr_t y, int64_t nc, int64_t h, int64_t w, int threads) {
              dd::avg_pool2(ptr<const float>(x), ptr<float>(y), nc, h, w, threads);
          },
          nogil, "2x2 average pool (floor) of nc x h x w.");
    m.def("excl_means",
          [](uintptr_t a, uintptr_t b, uintptr_t out, int64_t n, int64_t c, int64_t h, int64_t w,
             int threads) {
              dd::excl_means(ptr<const float>(a), ptr<const float>(b), ptr<float>(out), n, c, h, w,
                             threads);
          },
          nogil, "Per-pair means of one exclusion level: out n x 2 x c x c.");
    m.def("excl_grad",
          [](uintptr_t a, uintptr_t b, uintptr_t k, uintptr_t gup_a, uintptr_t gup_b, int64_t hc,
             int64_t wc, uintptr_t ga, uintptr_t gb, int64_t n, int64_t c, int64_t h, int64_t w,
             int threads) {
              dd::excl_grad(ptr<const float>(a), ptr<const float>(b), ptr<const float>(k),
                            ptr<const float>(gup_a), ptr<const float>(gup_b), hc, wc, ptr<float>(ga),
                            ptr<float>(gb), n, c, h, w, threads);
          },
          nogil, "Gradient of one exclusion level, plus the coarser level's spread back.");
    m.def("perturb",
          [](uintptr_t z, uintptr_t out, int64_t numel, float sigma, uint64_t seed, int threads) {
              dd::perturb(ptr<const float>(z), ptr<float>(out), numel, sigma, seed, threads);
          },
          nogil, "out = z + sigma * N(0, 1), Philox-keyed by seed.");
    m.def("adam_step",
          [](const std::vector<uintptr_t>& params, const std::vector<uintptr_t>& grads,
             const std::vector<uintptr_t>& exp_avgs, const std::vector<uintptr_t>& exp_avg_sqs,
             const std::vector<int64_t>& sizes, double weight1, double beta2, double value2,
             double bias2_sqrt, double eps, double neg_step_size, int threads) {
              const size_t n = sizes.size();
              if (params.size() != n || grads.size() != n || exp_avgs.size() != n ||
                  exp_avg_sqs.size() != n)
                  throw std::invalid_argument("adam_step: address and size lists differ in length");
              const auto p = ptrs<float>(params), m_ = ptrs<float>(exp_avgs), v = ptrs<float>(exp_avg_sqs);
              const auto g = ptrs<const float>(grads);
              dd::adam_step(p.data(), g.data(), m_.data(), v.data(), sizes.data(),
                            static_cast<int64_t>(n), weight1, beta2, value2, bias2_sqrt, eps,
                            neg_step_size, threads);
          },
          nogil, "One Adam step (IEEE sqrt) in place over float32 tensors given by address lists and sizes.");
    m.def("adam_moments",
          [](const std::vector<uintptr_t>& grads, const std::vector<uintptr_t>& exp_avgs,
             const std::vector<uintptr_t>& exp_avg_sqs, const std::vector<int64_t>& sizes,
             double weight1, double beta2, double value2, int threads) {
              const size_t n = sizes.size();
              if (grads.size() != n || exp_avgs.size() != n || exp_avg_sqs.size() != n)
                  throw std::invalid_argument("adam_moments: address and size lists differ in length");
              const auto g = ptrs<const float>(grads);
              const auto m_ = ptrs<float>(exp_avgs), v = ptrs<float>(exp_avg_sqs);
              dd::adam_moments(g.data(), m_.data(), v.data(), sizes.data(), static_cast<int64_t>(n),
                               weight1, beta2, value2, threads);
          },
          nogil, "Adam's moment updates (exp_avg, exp_avg_sq) in place.");
    m.def("adam_apply",
          [](const std::vector<uintptr_t>& params, const std::vector<uintptr_t>& exp_avgs,
             const std::vector<uintptr_t>& sqrts, const std::vector<int64_t>& sizes,
             double bias2_sqrt, double eps, double neg_step_size, int threads) {
              const size_t n = sizes.size();
              if (params.size() != n || exp_avgs.size() != n || sqrts.size() != n)
                  throw std::invalid_argument("adam_apply: address and size lists differ in length");
              const auto p = ptrs<float>(params);
              const auto m_ = ptrs<const float>(exp_avgs), s = ptrs<const float>(sqrts);
              dd::adam_apply(p.data(), m_.data(), s.data(), sizes.data(), static_cast<int64_t>(n),
                             bias2_sqrt, eps, neg_step_size, threads);
          },
          nogil, "Adam's parameter update in place, given sqrt(exp_avg_sq).");
    m.def("bn_act_fwd",
          [](uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean, uintptr_t invstd,
             uintptr_t running_mean, uintptr_t running_var, int64_t rows, int64_t c, float eps,
             float momentum, bool act, float slope, int threads) {
              dd::bn_act_fwd(ptr<const float>(x), ptr<const float>(gamma), ptr<const float>(beta),
                             ptr<float>(y), ptr<float>(mean), ptr<float>(invstd), ptr<float>(running_mean),
                             ptr<float>(running_var), rows, c, eps, momentum, act, slope, threads);
          },
          nogil, "Training-mode BatchNorm (+ LeakyReLU) of channels-last rows x c (address 0: no running stats).");
    m.def("bn_act_bwd",
          [](uintptr_t g, uintptr_t x, uintptr_t mean, uintptr_t invstd, uintptr_t gamma, uintptr_t beta,
             uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, int64_t rows, int64_t c, bool act, float slope,
             int threads) {
              dd::bn_act_bwd(ptr<const float>(g), ptr<const float>(x), ptr<const float>(mean),
                             ptr<const float>(invstd), ptr<const float>(gamma), ptr<const float>(beta),
                             ptr<float>(dx), ptr<float>(dgamma), ptr<float>(dbeta), rows, c, act, slope, threads);
          },
          nogil, "Gradients of bn_act_fwd.");
    m.def("reflect_pad_fwd",
          [](uintptr_t x, uintptr_t y, int64_t n, int64_t h, int64_t w, int64_t c, int64_t p, int threads) {
              dd::reflect_pad_fwd(ptr<const float>(x), ptr<float>(y), n, h, w, c, p, threads);
          },
          nogil, "Reflection padding of channels-last n x h x w x c by p.");
    m.def("reflect_pad_bwd",
          [](uintptr_t dy, uintptr_t dx, int64_t n, int64_t h, int64_t w, int64_t c, int64_t p, int threads) {
              dd::reflect_pad_bwd(ptr<const float>(dy), ptr<float>(dx), n, h, w, c, p, threads);
          },
          nogil, "Gradient of reflect_pad_fwd.");
    m.def("upsample_bilinear_bwd",
          [](uintptr_t g, uintptr_t dx, int64_t n, int64_t ih, int64_t iw, int64_t oh, int64_t ow, int64_t c,
             int threads) {
              dd::upsample_bilinear_bwd(ptr<const float>(g), ptr<float>(dx), n, ih, iw, oh, ow, c, threads);
          },
          nogil, "Gradient of bilinear upsampling (align_corners=True), channels-last.");
}
