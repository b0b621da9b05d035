"""`import shfan` and the runtime stay light: no torch, tensorrt or pycuda."""

import pytest

from conftest import heavy_modules_after


@pytest.mark.parametrize("module", ["shfan", "shfan.runtime", "shfan.runtime.backend", "shfan.runtime.backends",
                                    "shfan.runtime.backends.onnxruntime.runner", "shfan.runtime.backends.tensorrt.runner",
                                    "shfan.runtime.backends.pytorch.runner", "shfan.codec",
                                    "shfan.geometry", "shfan.metrics", "shfan.datasets", "shfan.plugins",
                                    "shfan.platform_facts", "shfan.builder.options", "shfan.builder.pipeline",
                                    "shfan.cli.build"])
def test_no_heavy_imports(module):
    heavy = heavy_modules_after(f"import {module}", ("torch", "tensorrt", "pycuda", "modelopt"))
    assert heavy == [], f"{module} imports {heavy}"


@pytest.mark.parametrize("module", ["shfan.runtime", "shfan.runtime.pipeline", "shfan.runtime.sinks", "shfan.cli.run"])
def test_robotics_libraries_load_only_for_their_sink(module):
    """mcap, foxglove-sdk, mcap-ros2-support and rosbags are optional (the robotics extra): only the
    sink that uses one imports it, when it is made. shfan-run's parser lists every sink's options."""
    code = f"import {module}" + ("; shfan.cli.run.build_parser()" if module == "shfan.cli.run" else "")
    heavy = heavy_modules_after(code, ("mcap", "foxglove", "mcap_ros2", "rosbags", "websockets", "torch"))
    assert heavy == [], f"{module} imports {heavy}"


def test_every_package_folder_ships_in_the_wheel():
    """A sub-package missing from pyproject's `packages` works in the editable install and breaks
    the wheel (shfan.bench and shfan.runtime.backends were once left out)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for name, folder in cfg["package-dir"].items():
        for init in (root / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(root / folder)
            found.add(".".join([name, *rel.parts]))
    assert found <= set(cfg["packages"]), sorted(found - set(cfg["packages"]))
