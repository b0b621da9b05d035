"""shfan.runtime: light inference (numpy, OpenCV, ONNX Runtime or TensorRT; never torch).

backends (the inference seam and its registry: Backend, open_backend; one package per backend,
onnxruntime / tensorrt / pytorch, each a spec and a runner) · cuda_host (the CUDA host seam) ·
sources (frame URIs, capture thread) · detector (YuNet) · tracker · smoothing (One Euro) ·
pipeline (the Python API: shfan.Pipeline; with pipeline_options, results, framing) · outputs (window, video, JSON Lines writers) · sinks (the
output seam: window, video, JSON Lines, MCAP, ROS 2 bag, live Foxglove) · stats.
"""
