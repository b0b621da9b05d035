"""shfan.runtime: light inference (numpy, OpenCV, ONNX Runtime or TensorRT; never torch).

backend (the inference seam) · ort_backend · trt_backend + cuda_host (the CUDA host seam) ·
sources (frame URIs, capture thread) · detector (YuNet) · tracker · smoothing (One Euro) ·
pipeline (the Python API: shfan.Pipeline) · outputs (window, video, JSON Lines) · stats.
"""
