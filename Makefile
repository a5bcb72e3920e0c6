# Set-up and checks. `make demo` and `make test` work on a fresh machine with only python3 (>= 3.10) and make.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch and torchvision come from the registry together; torchvision >= 0.29 pairs with torch >= 2.14.
TORCH  ?= "torch>=2.14" "torchvision>=0.29"
DEMO_OUT ?= demo_out
CHROMIUM ?= chromium

.PHONY: install install-dev demo test lint docs docs-serve clean

$(VENV)/.core: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet $(TORCH)
	# basicsr 1.4.2 is an sdist whose build imports torch: build it against the torch just installed.
	$(PIP) install --quiet --no-build-isolation basicsr==1.4.2
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.core

install-dev: $(VENV)/.dev

demo: $(VENV)/.core
	$(VENV)/bin/rawsynth generate --out $(DEMO_OUT) --crop 256 --crops-per-image 2 --shard-size 4 \
		--save-srgb --seed 0 --overwrite
	$(VENV)/bin/rawsynth inspect $(DEMO_OUT)
	$(VENV)/bin/rawsynth preview $(DEMO_OUT) --out $(DEMO_OUT)/preview.png -n 6
	$(VENV)/bin/rawsynth demo --out $(DEMO_OUT)/isp

test: $(VENV)/.dev
	@command -v $(CHROMIUM) >/dev/null 2>&1 || { echo "make test: installing Debian's chromium (report test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@command -v exiftool >/dev/null 2>&1 || { echo "make test: installing Debian's libimage-exiftool-perl (DNG validator test)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libimage-exiftool-perl; }
	$(PY) -m pytest
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check rawsynth rddm benchmarks tests

docs: $(VENV)/.dev
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

docs-serve: $(VENV)/.dev
	$(VENV)/bin/mkdocs serve

clean:
	rm -rf $(VENV) build site $(DEMO_OUT) .pytest_cache
