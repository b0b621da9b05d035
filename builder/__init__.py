"""shfan-build as a library: `build(BuildOptions(...))` makes a build folder (builder/workflow).
Light at import: the workflow and its libraries load on first use of `build`."""

__all__ = ["BuildOptions", "build"]


def __getattr__(name):
    if name == "BuildOptions":
        from shfan.builder.options import BuildOptions

        return BuildOptions
    if name == "build":
        from shfan.builder.workflow import build

        return build
    raise AttributeError(f"module 'shfan.builder' has no attribute {name!r}")
