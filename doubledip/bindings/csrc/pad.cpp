// Reflection padding of channels-last float32 images, forward and backward.
//
// x: n x h x w x c (an N x C x H x W channels-last tensor), padded by p on every side (p < h, w):
// y: n x (h + 2p) x (w + 2p) x c with y[oh][ow] = x[r(oh - p, h)][r(ow - p, w)], where the
// reflection r(i, m) = -i for i < 0 and 2 (m - 1) - i for i >= m (the edge itself not repeated).
// Every output pixel is c contiguous floats; a row's interior is one run of w * c floats.
// Backward: dx[ih][iw] = the sum of dy over the pixels that read x[ih][iw]: the interior copied,
// then the reflected border columns and border rows added in (each pixel's sum in a fixed order).
#include <cstring>

#include "kernels.h"

namespace dd {
namespace {

inline int64_t reflect(int64_t i, int64_t m) { return i < 0 ? -i : (i >= m ? 2 * (m - 1) - i : i); }

// Adds the 2p border pixels of the padded-width row dyr (wp x c) into the unpadded row dxr
// (w x c), each onto the column it reflects.
inline void add_borders(const float* __restrict dyr, float* __restrict dxr, int64_t w, int64_t c, int64_t p) {
    for (int64_t ow = 0; ow < p; ++ow) {  // left border: reads x column p - ow
        const float* __restrict s = dyr + ow * c;
        float* __restrict d = dxr + (p - ow) * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) d[j] += s[j];
    }
    for (int64_t ow = w + p; ow < w + 2 * p; ++ow) {  // right border
        const float* __restrict s = dyr + ow * c;
        float* __restrict d = dxr + reflect(ow - p, w) * c;
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) d[j] += s[j];
    }
}

// Adds the padded-width row dyr into the unpadded row dxr: interior, then borders.
inline void add_row(const float* __restrict dyr, float* __restrict dxr, int64_t w, int64_t c, int64_t p) {
    const int64_t run = w * c;
    const float* __restrict src = dyr + p * c;
#pragma omp simd
    for (int64_t e = 0; e < run; ++e) dxr[e] += src[e];
    add_borders(dyr, dxr, w, c, p);
}

}  // namespace

void reflect_pad_fwd(const float* x, float* y, int64_t n, int64_t h, int64_t w, int64_t c, int64_t p,
                     int threads) {
    const int64_t hp = h + 2 * p, wp = w + 2 * p;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t row = 0; row < n * hp; ++row) {
        const int64_t b = row / hp, oh = row % hp;
        const float* xr = x + (b * h + reflect(oh - p, h)) * w * c;
        float* yr = y + row * wp * c;
        std::memcpy(yr + p * c, xr, sizeof(float) * static_cast<size_t>(w * c));
        for (int64_t ow = 0; ow < p; ++ow) {
            std::memcpy(yr + ow * c, xr + (p - ow) * c, sizeof(float) * static_cast<size_t>(c));
            std::memcpy(yr + (w + p + ow) * c, xr + reflect(w + ow, w) * c, sizeof(float) * static_cast<size_t>(c));
        }
    }
}

void reflect_pad_bwd(const float* dy, float* dx, int64_t n, int64_t h, int64_t w, int64_t c, int64_t p,
                     int threads) {
    const int64_t hp = h + 2 * p, wp = w + 2 * p;
    // Interior rows: each x row gets its own dy row (copied, then its border columns added).
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t row = 0; row < n * h; ++row) {
        const int64_t b = row / h, ih = row % h;
        const float* dyr = dy + (b * hp + ih + p) * wp * c;
        float* dxr = dx + row * w * c;
        std::memcpy(dxr, dyr + p * c, sizeof(float) * static_cast<size_t>(w * c));
        add_borders(dyr, dxr, w, c, p);
    }
    // Border rows, added to the rows they reflect (top then bottom, per image: 2p rows).
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < n; ++b)
        for (int64_t oh = 0; oh < hp; ++oh) {
            if (oh >= p && oh < h + p) continue;
            add_row(dy + (b * hp + oh) * wp * c, dx + (b * h + reflect(oh - p, h)) * w * c, w, c, p);
        }
}

}  // namespace dd
