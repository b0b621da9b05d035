"""The old import path of the build workflow (shfan.builder.workflow), kept for one release for
user code that imports `shfan.builder.pipeline.build`; import `from shfan.builder import build,
BuildOptions` instead (one module named pipeline: the runtime's)."""

from shfan.builder.workflow import BuildOptions, BuildResult, build

__all__ = ["BuildOptions", "BuildResult", "build"]
