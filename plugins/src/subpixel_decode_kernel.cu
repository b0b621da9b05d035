// SubpixelDecode CUDA kernel: a parallel first-argmax per heatmap, then the shared window math.
#include "subpixel_decode_kernel.h"

#include "shfan/subpixel_decode.h"

namespace shfan
{
namespace
{

constexpr int kThreads = 256; // 8 warps: a 64x64 map is 16 cells per thread
constexpr int kWarps = kThreads / 32;

struct Peak
{
    float value;
    int index;
};

__device__ __forceinline__ Peak betterOf(Peak a, Peak b)
{
    return peakBeats(b.value, b.index, a.value, a.index) ? b : a;
}

__device__ __forceinline__ Peak warpArgmax(Peak p)
{
    for (int offset = 16; offset > 0; offset >>= 1)
    {
        Peak other;
        other.value = __shfl_down_sync(0xffffffffu, p.value, offset);
        other.index = __shfl_down_sync(0xffffffffu, p.index, offset);
        p = betterOf(p, other);
    }
    return p;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) subpixelDecodeKernel(T const* __restrict__ heatmaps, int height,
    int width, int window, float tau, float scale, float* __restrict__ landmarks, float* __restrict__ scores)
{
    __shared__ Peak warpBest[kWarps];
    int const cells = height * width;
    size_t const map = blockIdx.x;
    T const* hm = heatmaps + map * static_cast<size_t>(cells);

    // Each thread scans increasing indices with a strict '>', so it keeps its first maximum;
    // peakBeats breaks ties by index in the tree, so the block finds NumPy's first argmax.
    Peak best{-INFINITY, cells};
    for (int i = threadIdx.x; i < cells; i += kThreads)
    {
        float const v = loadAsFloat(hm, i);
        if (v > best.value)
        {
            best = Peak{v, i};
        }
    }
    best = warpArgmax(best);
    int const lane = threadIdx.x & 31;
    int const warp = threadIdx.x >> 5;
    if (lane == 0)
    {
        warpBest[warp] = best;
    }
    __syncthreads();
    if (warp == 0)
    {
        best = lane < kWarps ? warpBest[lane] : Peak{-INFINITY, cells};
        best = warpArgmax(best);
        if (lane == 0)
        {
            // An all -inf (or NaN) map leaves index == cells; fall back to cell 0 like NumPy.
            int const peak = best.index < cells ? best.index : 0;
            decodeFromPeak(hm, height, width, peak, window, tau, scale, landmarks + 2 * map, scores + map);
        }
    }
}

} // namespace

cudaError_t launchSubpixelDecode(void const* heatmaps, bool fp16, int batch, int keypoints, int height,
    int width, int window, float tau, float scale, float* landmarks, float* scores, cudaStream_t stream)
{
    if (!validDecodeParams(batch, keypoints, height, width, window))
    {
        return cudaErrorInvalidValue;
    }
    long long const maps = static_cast<long long>(batch) * keypoints;
    if (maps == 0)
    {
        return cudaSuccess;
    }
    if (maps > 0x7fffffffLL)
    {
        return cudaErrorInvalidValue;
    }
    dim3 const grid(static_cast<unsigned>(maps));
    if (fp16)
    {
        subpixelDecodeKernel<Half><<<grid, kThreads, 0, stream>>>(
            static_cast<Half const*>(heatmaps), height, width, window, tau, scale, landmarks, scores);
    }
    else
    {
        subpixelDecodeKernel<float><<<grid, kThreads, 0, stream>>>(
            static_cast<float const*>(heatmaps), height, width, window, tau, scale, landmarks, scores);
    }
    return cudaGetLastError();
}

} // namespace shfan
