// CPU build of the SubpixelDecode math behind a tiny C ABI, so the exact header the CUDA kernel
// uses is tested with ctypes on machines without a GPU (plugins/tests/test_plugin_host.py).
#include "shfan/decode_fields.h"
#include "shfan/subpixel_decode.h"

#include <cstddef>
#include <cstring>

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

// Returns 0 on success, 1 for invalid parameters (even window, empty map, negative sizes,
// temperature or scale not finite and > 0).
extern "C" __attribute__((visibility("default"))) int shfan_subpixel_decode_host(void const* heatmaps, int fp16,
    int batch, int keypoints, int height, int width, int window, float tau, float scale, float* landmarks,
    float* scores)
{
    if (!shfan::validDecodeParams(batch, keypoints, height, width, window)
        || !shfan::validDecodeAttributes(window, tau, scale))
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

// The plugin creator's attribute parsing (decode_fields.h) on n fields given as parallel arrays of
// name, nvinfer1::PluginFieldType value, data pointer and length. Returns 0 and the parameters,
// or 1 with the creator's one-line message in `message`.
extern "C" __attribute__((visibility("default"))) int shfan_decode_params_from_fields(int n, char const* const* names,
    int const* types, void const* const* data, int const* lengths, int* window, float* temperature, float* scale,
    char* message, int messageSize)
{
    shfan::DecodeParams params;
    char const* error = nullptr;
    for (int i = 0; i < n && error == nullptr; ++i)
    {
        error = shfan::applyDecodeField(names[i], types[i], data[i], lengths[i], params);
    }
    if (error == nullptr)
    {
        error = shfan::checkDecodeParams(params);
    }
    if (error != nullptr)
    {
        if (message != nullptr && messageSize > 0)
        {
            std::strncpy(message, error, static_cast<size_t>(messageSize) - 1);
            message[messageSize - 1] = '\0';
        }
        return 1;
    }
    *window = params.window;
    *temperature = params.temperature;
    *scale = params.scale;
    return 0;
}
