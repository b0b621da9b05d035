"""Serving shfan behind NVIDIA Triton Inference Server.

- `shfan.serve.batching`: many Pipeline.process() calls at once, every face of every image in one
  backend call (what Triton's dynamic batcher hands the model must reach the network as a batch).
- `shfan.serve.server`: the PyTriton models (`shfan-serve`): images in, faces with points out;
  images + boxes in, points out. Needs PyTriton in its own venv (`make serve-install`: it pins numpy < 2).
- `shfan.serve.client`: a small tritonclient helper for those models.
- `shfan.builder.triton_repo`: a model repository for a stock tritonserver (shfan-build --triton-repo).

Nothing here is imported by `import shfan`; pytriton and tritonclient are imported only by the
modules that use them.
"""
