# SAR Compressor: every target installs what it needs itself, idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS  ?= /usr/bin/python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
TORCH_SPEC  ?= torch==2.13.0
NUMPY_SPEC  ?= numpy<2
PIP_DEPS    ?= "setuptools>=64" pytest pytest-qgis hypothesis ruff tqdm constriction $(ARCHIVE_DEPS)
# issue 21 (batch on Dask, Zarr codec), capped where newer releases need numpy >= 1.25/1.26 and pip would replace
# Debian 12's numpy 1.24 (zarr 3, xarray 2025.7+, pandas 3)
ARCHIVE_DEPS ?= "dask[distributed]>=2024.8,<2027" "zarr>=2.18,<3" "numcodecs>=0.13,<0.16" "xarray>=2024.7,<2025.7" "pandas>=2.1,<3"
APT_PKGS    := python3-qgis python3-rasterio python3-venv python3-matplotlib qgis xvfb
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP       := $(VENV)/.setup-stamp
QGIS_PLUGIN_DIR ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default/python/plugins
PLUGIN_NAME := sar_compressor
VERSION     := $(shell sed -n 's/^version=//p' metadata.txt)
DIST        := dist/$(PLUGIN_NAME)-$(VERSION).zip
export QT_QPA_PLATFORM ?= offscreen
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup system-deps test lint format demo bench train package deploy clean

help:
	@echo "make setup    install system packages, venv and Python deps (idempotent)"
	@echo "make test     ruff + pytest, headless"
	@echo "make demo     simulate a SAR scene (or INPUT=file.tif), compress, decompress, evaluate, PNG"
	@echo "make bench    rate-distortion vs JPEG 2000, speed and memory -> bench/results/"
	@echo "make train    retrain the bundled learned models (none is bundled today: the fitted parts are fitted per tile)"
	@echo "make package  plugin zip for the QGIS plugin repository -> $(DIST)"
	@echo "make deploy   copy the plugin into QGIS_PLUGIN_DIR=$(QGIS_PLUGIN_DIR)"
	@echo "make clean    remove venv, caches and build outputs"

setup: $(STAMP)

system-deps:
	@if ! $(PYTHON_SYS) -c "import qgis.core, rasterio, venv, matplotlib" 2>/dev/null \
	    || ! command -v qgis_process >/dev/null || ! command -v Xvfb >/dev/null; then \
	  echo "Installing Debian packages: $(APT_PKGS)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PKGS) >/dev/null; \
	fi

$(STAMP): pyproject.toml Makefile
	@$(MAKE) --no-print-directory system-deps
	@[ -x $(PY) ] || $(PYTHON_SYS) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)" "$(NUMPY_SPEC)" $(PIP_DEPS)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest -q -rs

demo: setup
	$(PY) -m sar_compressor.bench.demo $(if $(INPUT),--input "$(INPUT)") --out out/demo

bench: setup
	$(PY) -m sar_compressor.bench.run $(BENCH_ARGS)

train:
	@echo "No model to train: no network is bundled (the autoencoder base was retired in .sarz format 6); the adaptive loop filter, the inter-scale predictors, the phase laws and the sign laws are fitted by the encoder on each tile of each file (resources/models/MODELS.md)."

package:
	@rm -rf build/package && mkdir -p build/package/$(PLUGIN_NAME) dist
	git archive --format=tar HEAD | tar -x -C build/package/$(PLUGIN_NAME)
	cd build/package/$(PLUGIN_NAME) && rm -rf tests .ci training/runs Makefile pyproject.toml .gitignore .gitattributes \
	  && rm -f bench/results/*.json   # the figures README links (and theirs) stay: markdown and pictures
	cd build/package && rm -f ../../$(DIST) && $(PYTHON_SYS) -m zipfile -c ../../$(DIST) $(PLUGIN_NAME)
	@echo "wrote $(DIST)"

deploy: package   # what the zip holds (no tests, Makefile or CI files in the profile)
	@mkdir -p "$(QGIS_PLUGIN_DIR)"
	rm -rf "$(QGIS_PLUGIN_DIR)/$(PLUGIN_NAME)"
	cp -r build/package/$(PLUGIN_NAME) "$(QGIS_PLUGIN_DIR)/$(PLUGIN_NAME)"
	@echo "deployed to $(QGIS_PLUGIN_DIR)/$(PLUGIN_NAME); enable it in QGIS > Plugins"

clean:
	rm -rf $(VENV) build dist out .pytest_cache .ruff_cache tests/artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
