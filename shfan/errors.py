"""User-facing errors: each carries a one-line message that names the fix. CLIs print them
without a traceback. Torch-free, so any CLI can catch them cheaply."""


class ShfanError(Exception):
    """Base of every error a user can fix."""


class CheckpointError(ShfanError, ValueError):
    """A file that is not a usable FAN checkpoint."""


class DatasetError(ShfanError, ValueError):
    """A dataset file that cannot be read (names file and line)."""


class BackendError(ShfanError, RuntimeError):
    """A model or inference backend that cannot be used."""


class OutputError(ShfanError, RuntimeError):
    """An output file, folder or window that cannot be created or written."""

    @classmethod
    def write_failed(cls, path, exc: OSError) -> "OutputError":
        """A write into an all-or-nothing output that failed part way (its partial file was removed)."""
        return cls(f"{path}: cannot write ({exc.strerror or exc}); nothing was kept")


class PluginError(ShfanError, RuntimeError):
    """The SubpixelDecode plugin library (or its host/kernel build) is missing or unusable
    (raised by shfan.plugins, which re-exports it)."""


class BuildError(ShfanError, RuntimeError):
    """A build input or step that cannot be used (shfan-build; builder.metadata re-exports it)."""
