# Two commands for a fresh machine: `make run` (set up, then serve) and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# llama.cpp is built from source (about 4 minutes on 2 cores). Portable x86-64 kernels (AVX2/FMA):
# a native build picks up AMX on CPUs whose virtual machines do not enable it, and crashes in its
# matmul. --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS and would hand back a wheel built
# with other flags.
LLAMA_VERSION ?= 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
EXTRAS ?= all,dev
DEBIAN_PACKAGES := chromium

.PHONY: install run test test-fast lint bench clean system-deps llama-server

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel

system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import llama_cpp" 2>/dev/null || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet --no-cache-dir --no-binary llama-cpp-python \
	    "llama-cpp-python==$(LLAMA_VERSION)"
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: system-deps $(VENV)/.installed

run: install
	$(BIN)/lingxi serve

lint: install
	$(BIN)/ruff check --select F,E9 src tests benchmarks

test: install lint
	$(BIN)/python -m pytest -m "not gpu" -p no:cacheprovider; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-fast: install
	$(BIN)/python -m pytest -p no:cacheprovider; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

bench: install
	$(BIN)/python benchmarks/engines.py

# llama.cpp's own server, built from the same vendored llama.cpp as llama-cpp-python (the sdist carries
# it): the reference that benchmarks/concurrency.py measures Lingxi against. Not part of `install`.
LLAMA_SERVER := build/llama.cpp/bin/llama-server
llama-server: $(LLAMA_SERVER)
$(LLAMA_SERVER): | $(BIN)/python
	mkdir -p build/sdist
	$(BIN)/pip download --quiet --no-deps --no-binary llama-cpp-python \
	  "llama-cpp-python==$(LLAMA_VERSION)" -d build/sdist
	tar -xzf build/sdist/llama_cpp_python-$(LLAMA_VERSION).tar.gz -C build/sdist
	cmake -S build/sdist/llama_cpp_python-$(LLAMA_VERSION)/vendor/llama.cpp -B build/llama.cpp \
	  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
	  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	  $(LLAMA_CMAKE_ARGS) >/dev/null
	cmake --build build/llama.cpp --target llama-server -j $$(nproc)

clean:
	rm -rf $(VENV) build dist src/*.egg-info
