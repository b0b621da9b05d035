"""`import shfan` and the runtime stay light: no torch, tensorrt or pycuda."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["shfan", "shfan.runtime", "shfan.runtime.backend", "shfan.codec",
                                    "shfan.geometry", "shfan.metrics", "shfan.datasets", "shfan.plugins"])
def test_no_heavy_imports(module):
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'tensorrt', 'pycuda', 'modelopt') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"{module} imports {out}"
