// SubpixelDecode per-landmark math (DESIGN.md §3), shared by the CUDA kernel and the host build.
//
// Everything here is header-only and `__host__ __device__` under nvcc, plain inline C++ under
// g++, so the exact code that runs in the TensorRT plugin is unit-tested on a CPU machine.
// Must match shfan.codec.decode(..., method="subpixel") to <= 1e-3 heatmap px.
//
// Non-finite input (one rule in every implementation: NumPy, PyTorch, ONNX ops, this header):
//  * peak = first index of the largest non-NaN value (-inf is a value); an all-NaN map peaks at 0;
//  * window weight of a cell = 1 when it equals the peak value (so +inf peaks and all -inf maps
//    weigh their equal cells alike), else exp(tau (H - Hpeak)), and 0 when that is NaN (NaN cells
//    are excluded like cells outside the map);
//  * no weight at all (only an all-NaN map): offset 0, the peak cell's centre;
//  * score = H[peak] as it is (NaN, +-inf), so callers can reject the landmark.
// So landmarks are always finite; the score carries the problem.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define SHFAN_HD __host__ __device__ __forceinline__
#else
#define SHFAN_HD inline
#endif

namespace shfan
{

// Raw IEEE-754 binary16 storage; a struct (not __half) so g++ can compile the same templates.
struct Half
{
    uint16_t bits;
};

// binary16 -> float, exact for every value (normals, subnormals, inf, nan).
SHFAN_HD float halfBitsToFloat(uint16_t h)
{
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(h));
#else
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0x1fu)
    {
        bits = sign | 0x7f800000u | (mantissa << 13); // inf / nan
    }
    else if (exponent != 0)
    {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13); // normal: rebias 15 -> 127
    }
    else if (mantissa == 0)
    {
        bits = sign; // signed zero
    }
    else
    {
        // subnormal: shift the mantissa up until its leading 1 becomes the implicit bit
        exponent = 113u;
        while ((mantissa & 0x400u) == 0)
        {
            mantissa <<= 1;
            --exponent;
        }
        bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
    }
    float out;
    __builtin_memcpy(&out, &bits, sizeof(out));
    return out;
#endif
}

SHFAN_HD float loadAsFloat(float const* map, int i)
{
    return map[i];
}

SHFAN_HD float loadAsFloat(Half const* map, int i)
{
    return halfBitsToFloat(map[i].bits);
}

SHFAN_HD bool isNaN(float x)
{
    return x != x;
}

// Argmax ordering: a larger value wins; on equal values the lower row-major index wins, so every
// reduction order (sequential or a GPU tree) picks NumPy's "first occurrence". A NaN never wins
// (every comparison with it is false). Start from {-inf, n}: the first -inf cell still beats it.
SHFAN_HD bool peakBeats(float value, int index, float bestValue, int bestIndex)
{
    return value > bestValue || (value == bestValue && index < bestIndex);
}

// Sequential first argmax over n cells (host path; the kernel does the same as a parallel reduce):
// the first index of the largest non-NaN value, 0 for an all-NaN map.
template <typename T>
SHFAN_HD int firstArgmax(T const* map, int n)
{
    int best = n;
    float bestValue = -INFINITY;
    for (int i = 0; i < n; ++i)
    {
        float const v = loadAsFloat(map, i);
        if (peakBeats(v, i, bestValue, best))
        {
            bestValue = v;
            best = i;
        }
    }
    return best < n ? best : 0;
}

// Weight of a window cell holding h when the peak holds `peak` (see the rule at the top):
// in [0, 1] because nothing non-NaN exceeds the peak and tau > 0.
SHFAN_HD float windowWeight(float h, float peak, float tau)
{
    if (h == peak)
    {
        return 1.f; // also +inf == +inf and -inf == -inf, where h - peak would be NaN
    }
    float const w = expf(tau * (h - peak));
    return isNaN(w) ? 0.f : w;
}

// Local soft-argmax around the peak cell (x0, y0): weights windowWeight(H, Hpeak, tau) over the
// window cells that lie inside the map (outside cells are excluded, not zero-padded), then
// normalised. Writes the continuous heatmap position (cell centre = index + 0.5). The loops run
// over the in-map part of the window only, so a huge window costs no more than the map.
template <typename T>
SHFAN_HD void windowSoftArgmax(
    T const* map, int height, int width, int x0, int y0, int window, float tau, float* u, float* v)
{
    int const r = window / 2;
    int const yLo = r > y0 ? 0 : y0 - r;
    int const yHi = r > height - 1 - y0 ? height - 1 : y0 + r;
    int const xLo = r > x0 ? 0 : x0 - r;
    int const xHi = r > width - 1 - x0 ? width - 1 : x0 + r;
    float const centre = loadAsFloat(map, y0 * width + x0);
    float sumW = 0.f, sumDx = 0.f, sumDy = 0.f;
    for (int y = yLo; y <= yHi; ++y)
    {
        for (int x = xLo; x <= xHi; ++x)
        {
            float const w = windowWeight(loadAsFloat(map, y * width + x), centre, tau);
            sumW += w;
            sumDx += w * static_cast<float>(x - x0);
            sumDy += w * static_cast<float>(y - y0);
        }
    }
    // sumW >= 1 whenever the peak is not NaN (it weighs itself 1); 0 only for an all-NaN map.
    *u = static_cast<float>(x0) + 0.5f + (sumW > 0.f ? sumDx / sumW : 0.f);
    *v = static_cast<float>(y0) + 0.5f + (sumW > 0.f ? sumDy / sumW : 0.f);
}

// Decode one heatmap given its peak index: landmark (x, y) * scale and score = H[peak].
template <typename T>
SHFAN_HD void decodeFromPeak(T const* map, int height, int width, int peak, int window, float tau,
    float scale, float* landmark, float* score)
{
    int const x0 = peak % width;
    int const y0 = peak / width;
    float u, v;
    windowSoftArgmax(map, height, width, x0, y0, window, tau, &u, &v);
    landmark[0] = u * scale;
    landmark[1] = v * scale;
    *score = loadAsFloat(map, peak);
}

// Whole per-landmark decode, sequential (host build and reference for the kernel).
template <typename T>
SHFAN_HD void decodeHeatmap(
    T const* map, int height, int width, int window, float tau, float scale, float* landmark, float* score)
{
    int const peak = firstArgmax(map, height * width);
    decodeFromPeak(map, height, width, peak, window, tau, scale, landmark, score);
}

// Parameter check shared by the plugin, the launcher and the host ABI.
SHFAN_HD bool validDecodeParams(int batch, int keypoints, int height, int width, int window)
{
    return batch >= 0 && keypoints >= 0 && height > 0 && width > 0 && window >= 1 && window % 2 == 1;
}

// Attribute check (the plugin creator reports which one failed, see decode_fields.h): tau and
// scale finite and > 0 (a negative tau made every exponent positive: inf / inf = NaN landmarks).
SHFAN_HD bool validDecodeAttributes(int window, float tau, float scale)
{
    return window >= 1 && window % 2 == 1 && tau > 0.f && tau < INFINITY && scale > 0.f && scale < INFINITY;
}

} // namespace shfan
