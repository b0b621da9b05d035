"""shfan.runtime: light inference (numpy, OpenCV, ONNX Runtime or TensorRT; never torch).

backend (the inference seam: Backend, open_backend) · backends (the registry: one module per
backend, onnxruntime / tensorrt / pytorch) · ort_backend · trt_backend + cuda_host (the CUDA host seam) ·
sources (frame URIs, capture thread) · detector (YuNet) · tracker · smoothing (One Euro) ·
pipeline (the Python API: shfan.Pipeline; with pipeline_options, results, framing) · outputs (window, video, JSON Lines writers) · sinks (the
output seam: window, video, JSON Lines, MCAP, ROS 2 bag, live Foxglove) · stats.
"""
