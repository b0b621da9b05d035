"""`import shfan` and the runtime stay light: no torch, tensorrt or pycuda."""

import subprocess
import sys

import pytest

from conftest import heavy_modules_after


@pytest.mark.parametrize("module", ["shfan", "shfan.runtime", "shfan.runtime.backend", "shfan.runtime.backends",
                                    "shfan.runtime.backends.onnxruntime.runner", "shfan.runtime.backends.tensorrt.runner",
                                    "shfan.runtime.backends.pytorch.runner", "shfan.codec",
                                    "shfan.geometry", "shfan.metrics", "shfan.datasets", "shfan.plugins",
                                    "shfan.platform_facts", "shfan.builder.options", "shfan.builder.workflow",
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


def test_the_public_surface_is_discoverable():
    """dir(shfan) and __all__ name the API without loading it (`import shfan` stays light)."""
    code = ("import shfan; names = dir(shfan); "
            "assert {'Pipeline', 'PipelineOptions', 'Result', 'Face', 'ShfanError', '__version__'} <= set(names), names; "
            "assert set(shfan.__all__) <= set(names); assert {'runtime', 'builder', 'evaluate', 'train'} <= set(names)")
    assert heavy_modules_after(code, ("torch", "onnx", "onnxruntime", "tensorrt", "cv2", "shfan.runtime.pipeline")) == []
    import shfan

    assert shfan.Pipeline.__module__ == "shfan.runtime.pipeline" and issubclass(shfan.ShfanError, Exception)


def test_a_plain_checkout_imports_the_runtime(tmp_path):
    """README: with the checkout on PYTHONPATH (nothing installed) shfan.runtime, shfan.builder and
    shfan.calibration import from the folders beside shfan/."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    import shfan

    if Path(shfan.__file__).resolve().parent.parent != root:
        pytest.skip("shfan is imported from an installed copy, not this checkout")
    code = ("import shfan.runtime, shfan.runtime.backend, shfan.builder, shfan.calibration; "
            "print(shfan.runtime.__file__)")
    env = {"PYTHONPATH": str(root), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONNOUSERSITE": "1"}
    out = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path.append(%r); " % _site_packages()
                          + code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(root / "runtime" / "__init__.py")


def _site_packages() -> str:
    """numpy's folder (the plain checkout still needs its dependencies), without the .pth files
    (`-S`) that an editable install of shfan adds."""
    import os

    import numpy

    return os.path.dirname(os.path.dirname(numpy.__file__))


def test_the_builder_package_gives_build_and_its_options_lazily():
    """`from shfan.builder import BuildOptions, build` (the README's import) loads the workflow
    only when build is asked for; the old path shfan.builder.pipeline still works this release."""
    code = "import shfan.builder as b; b.BuildOptions; import sys; print('shfan.builder.workflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    from shfan.builder import build
    from shfan.builder.pipeline import build as old_build

    assert build is old_build
