# MOVSeg-ROS: one-command set-up, tests, demo and benchmarks on the pip-only ROS 2 stack.
# `make test` and `make demo` run `make setup` first (idempotent, stamp files in .venv/).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
SITE := $(VENV)/lib/python3.11/site-packages
# Every run on these machines keeps DDS on loopback (see README).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE := $(CURDIR)/config/fastdds_shm.xml
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup lint test demo bench clean interfaces

setup: $(VENV)/.stamp-interfaces $(VENV)/.stamp-editable

$(VENV)/.stamp-torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch first: installing open_clip_torch before pinning torch pulls another torch
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	touch $@

$(VENV)/.stamp-deps: $(VENV)/.stamp-torch requirements.txt constraints.txt
	$(PIP) install -q -r requirements.txt -c constraints.txt
	touch $@

# rosidl interfaces (msg/, srv/) built with plain CMake into the venv prefix.
$(VENV)/.stamp-interfaces: $(VENV)/.stamp-deps CMakeLists.txt package.xml $(wildcard msg/*.msg srv/*.srv) scripts/fix_ros_wheels.py
	mkdir -p build
	$(PY) scripts/fix_ros_wheels.py $(VENV)
	cmake -S . -B build/interfaces -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
	  -DMOVSEG_INSTALL_PYTHON=OFF \
	  -DCMAKE_PREFIX_PATH=$(abspath $(VENV)) -DCMAKE_INSTALL_PREFIX=$(abspath $(VENV)) \
	  -DPython3_EXECUTABLE=$(abspath $(PY)) -DPYTHON_INSTALL_DIR=lib/python3.11/site-packages > build/interfaces.log 2>&1 \
	  || (mkdir -p build; cat build/interfaces.log; exit 1)
	cmake --build build/interfaces -j2 >> build/interfaces.log 2>&1 || (tail -50 build/interfaces.log; exit 1)
	cmake --install build/interfaces >> build/interfaces.log 2>&1 || (tail -50 build/interfaces.log; exit 1)
	touch $@

$(VENV)/.stamp-editable: $(VENV)/.stamp-deps setup.py pyproject.toml
	$(PIP) install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $@

interfaces: $(VENV)/.stamp-interfaces

# ruff (pyproject.toml [tool.ruff]): pyflakes, import order, docstrings on public names, 120 columns
lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	ROS_DOMAIN_ID=$$(( ($$$$ % 200) + 10 )) $(PY) -m pytest -q --durations=15 test

demo: setup
	$(PY) scripts/demo.py

bench: setup
	$(PIP) install -q -r requirements-bench.txt -c constraints.txt
	@# open3d's wheel links libusb-1.0 (a Debian package); without it bench/normals.py skips Open3D and says so
	@$(PY) -c "import open3d" 2>/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  apt-get install -y -q libusb-1.0-0 >/dev/null) || echo "note: open3d unavailable (needs libusb-1.0-0)"
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build install log
