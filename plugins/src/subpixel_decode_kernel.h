// Launcher for the SubpixelDecode CUDA kernel (used by the TensorRT plugin and the GPU benchmark).
#pragma once

#include <cuda_runtime_api.h>

namespace shfan
{

// heatmaps [B, K, H, W] (float32, or float16 when fp16) -> landmarks [B, K, 2] (heatmap px *
// scale) and scores [B, K], all device pointers. One block per heatmap; no allocation and no
// host synchronisation, so it is safe inside CUDA graph capture. Returns the launch status
// (cudaErrorInvalidValue for bad parameters).
cudaError_t launchSubpixelDecode(void const* heatmaps, bool fp16, int batch, int keypoints, int height,
    int width, int window, float tau, float scale, float* landmarks, float* scores, cudaStream_t stream);

} // namespace shfan
