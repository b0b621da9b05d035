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

    // Each thread scans increasing indices with peakBeats (NaN never wins; the first -inf beats
    // the {-inf, cells} start), so it keeps its first maximum; peakBeats breaks ties by index in
    // the tree, so the block finds firstArgmax's peak (the header's rule).
    Peak best{-INFINITY, cells};
    for (int i = threadIdx.x; i < cells; i += kThreads)
    {
        float const v = loadAsFloat(hm, i);
        if (peakBeats(v, i, best.value, best.index))
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
            // Only an all-NaN map leaves index == cells; it peaks at cell 0 (the header's rule).
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
    if (!validDecodeAttributes(window, tau, scale))
    {
        return cudaErrorInvalidValue;
    }
    // cudaLaunchKernel returns this launch's own status; `<<<>>>` + cudaGetLastError() could
    // report an earlier, unrelated kernel's error instead.
    dim3 const grid(static_cast<unsigned>(maps));
    dim3 const block(kThreads);
    void* maps_ptr = const_cast<void*>(heatmaps); // same bits as the kernel's `T const*` parameter
    void* args[] = {&maps_ptr, &height, &width, &window, &tau, &scale, &landmarks, &scores};
    void const* kernel = fp16 ? reinterpret_cast<void const*>(&subpixelDecodeKernel<Half>)
                              : reinterpret_cast<void const*>(&subpixelDecodeKernel<float>);
    return cudaLaunchKernel(kernel, grid, block, args, 0, stream);
}

} // namespace shfan
