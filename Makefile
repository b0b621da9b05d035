# The README's commands. `make demo` runs the main job on the built-in default model and demo
# source; `make test` runs the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch pinned to the local 2.13.0 CPU build (an unpinned torch pulls GBs of CUDA wheels)
TORCH ?= torch==2.13.0
# YuNet face detector: shfan-run downloads it once (sha256-checked); a local copy skips that.
DETECTOR ?= $(wildcard ../shared/models/yunet_s_640_640.onnx)
DETECTOR_FLAG := $(if $(DETECTOR),--detector-model $(DETECTOR),)

# Triton serving (shfan-serve) lives in its own venv: PyTriton pins numpy < 2, the main venv has 2.x.
SERVE_VENV ?= .venv-serve
SERVE_BIN := $(SERVE_VENV)/bin
SERVE_TESTS := tests/test_triton_env.py tests/test_triton_repo.py tests/test_triton_batching.py tests/test_triton_serve.py

.PHONY: install test demo bench doctor plugin clean serve-install test-serve

$(BIN)/shfan-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[torch,build,demo,dev]"
	@touch $@

install: $(BIN)/shfan-run

$(SERVE_BIN)/shfan-serve: pyproject.toml
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_BIN)/pip install -q --upgrade pip
	$(SERVE_BIN)/pip install -q -e ".[serve,demo,dev]"
	@touch $@

serve-install: $(SERVE_BIN)/shfan-serve

# One line per test file with its share done (pytest's default reporter, not -q's bare dots) and
# the ten slowest tests at the end: the suite takes ~15-20 minutes on 2 busy cores.
test: install
	$(BIN)/python -m pytest --durations=10

# starts a real tritonserver (PyTriton) on loopback ports; CPU only
test-serve: serve-install
	OMP_WAIT_POLICY=PASSIVE $(SERVE_BIN)/python -m pytest -q $(SERVE_TESTS)

# --jsonl appends (a restarted service keeps its lines), so the demo starts a fresh file each time.
demo: install
	rm -f demo.jsonl
	$(BIN)/shfan-run --source demo --headless --max-frames 300 --output demo.mp4 --jsonl demo.jsonl $(DETECTOR_FLAG)

bench: install
	$(BIN)/shfan-bench

doctor: install
	$(BIN)/shfan-doctor

plugin:
	cmake -S plugins -B plugins/build && cmake --build plugins/build -j

clean:
	rm -rf $(VENV) $(SERVE_VENV) build plugins/build .pytest_cache demo.mp4 demo.jsonl
