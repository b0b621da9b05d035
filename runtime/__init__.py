"""shfan.runtime: light inference (numpy, OpenCV, ONNX Runtime or TensorRT; never torch)."""
