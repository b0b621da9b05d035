// SubpixelDecode per-landmark math (DESIGN.md §3), shared by the CUDA kernel and the host build.
//
// Everything here is header-only and `__host__ __device__` under nvcc, plain inline C++ under
// g++, so the exact code that runs in the TensorRT plugin is unit-tested on a CPU machine.
// Must match shfan.codec.decode(..., method="subpixel") to <= 1e-3 heatmap px.
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

// Argmax ordering: a larger value wins; on equal values the lower row-major index wins, so every
// reduction order (sequential or a GPU tree) picks NumPy's "first occurrence".
SHFAN_HD bool peakBeats(float value, int index, float bestValue, int bestIndex)
{
    return value > bestValue || (value == bestValue && index < bestIndex);
}

// Sequential first argmax over n cells (host path; the kernel does the same as a parallel reduce).
template <typename T>
SHFAN_HD int firstArgmax(T const* map, int n)
{
    int best = 0;
    float bestValue = loadAsFloat(map, 0);
    for (int i = 1; i < n; ++i)
    {
        float const v = loadAsFloat(map, i);
        if (v > bestValue)
        {
            bestValue = v;
            best = i;
        }
    }
    return best;
}

// Local soft-argmax around the peak cell (x0, y0): weights exp(tau * (H - Hpeak)) over the
// window cells that lie inside the map (outside cells are excluded, not zero-padded), then
// normalised. Writes the continuous heatmap position (cell centre = index + 0.5).
template <typename T>
SHFAN_HD void windowSoftArgmax(
    T const* map, int height, int width, int x0, int y0, int window, float tau, float* u, float* v)
{
    int const r = window / 2;
    float const centre = loadAsFloat(map, y0 * width + x0);
    float sumW = 0.f, sumDx = 0.f, sumDy = 0.f;
    for (int dy = -r; dy <= r; ++dy)
    {
        int const y = y0 + dy;
        if (y < 0 || y >= height)
        {
            continue;
        }
        for (int dx = -r; dx <= r; ++dx)
        {
            int const x = x0 + dx;
            if (x < 0 || x >= width)
            {
                continue;
            }
            // The centre is the window max, so the exponent is <= 0: no overflow, no max pass.
            float const w = expf(tau * (loadAsFloat(map, y * width + x) - centre));
            sumW += w;
            sumDx += w * static_cast<float>(dx);
            sumDy += w * static_cast<float>(dy);
        }
    }
    // sumW >= 1 (the centre contributes exp(0)), so the division is always safe.
    *u = static_cast<float>(x0) + 0.5f + sumDx / sumW;
    *v = static_cast<float>(y0) + 0.5f + sumDy / sumW;
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

} // namespace shfan
