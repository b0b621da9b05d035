// CPU build of the SubpixelDecode math behind a tiny C ABI, so the exact header the CUDA kernel
// uses is tested with ctypes on machines without a GPU (plugins/tests/test_plugin_host.py).
#include "shfan/subpixel_decode.h"

#include <cstddef>

namespace
{

template <typename T>
void decodeAll(T const* heatmaps, int maps, int height, int width, int window, float tau, float scale,
    float* landmarks, float* scores)
{
    size_t const cells = static_cast<size_t>(height) * width;
    for (int m = 0; m < maps; ++m)
    {
        shfan::decodeHeatmap(heatmaps + m * cells, height, width, window, tau, scale, landmarks + 2 * m, scores + m);
    }
}

} // namespace

// Returns 0 on success, 1 for invalid parameters (even window, empty map, negative sizes).
extern "C" __attribute__((visibility("default"))) int shfan_subpixel_decode_host(void const* heatmaps, int fp16,
    int batch, int keypoints, int height, int width, int window, float tau, float scale, float* landmarks,
    float* scores)
{
    if (!shfan::validDecodeParams(batch, keypoints, height, width, window))
    {
        return 1;
    }
    int const maps = batch * keypoints;
    if (fp16)
    {
        decodeAll(static_cast<shfan::Half const*>(heatmaps), maps, height, width, window, tau, scale, landmarks, scores);
    }
    else
    {
        decodeAll(static_cast<float const*>(heatmaps), maps, height, width, window, tau, scale, landmarks, scores);
    }
    return 0;
}
