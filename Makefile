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

.PHONY: install test demo bench doctor plugin clean

$(BIN)/shfan-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[torch,build,demo,dev]"
	@touch $@

install: $(BIN)/shfan-run

test: install
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/shfan-run --source demo --headless --max-frames 300 --output demo.mp4 --jsonl demo.jsonl $(DETECTOR_FLAG)

bench: install
	$(BIN)/shfan-bench

doctor: install
	$(BIN)/shfan-doctor

plugin:
	cmake -S plugins -B plugins/build && cmake --build plugins/build -j

clean:
	rm -rf $(VENV) build plugins/build .pytest_cache demo.mp4 demo.jsonl
