# speech_gru: `make demo` runs the main job, `make test` runs the checks.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
APT_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
	libportaudio2 pulseaudio pulseaudio-utils chromium chromium-driver

.PHONY: install system-packages demo test test-fast lint format clean

install: $(VENV)/.installed system-packages

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Debian packages for speech synthesis (tests, demo, `speech-gru synth`: espeak-ng, flite,
# festival and its English voices), the microphone (stream, record) and the browser that
# tests `speech-gru serve` (chromium, chromium-driver).
system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "missing Debian packages; run: sudo apt-get install -y $$missing"; \
	fi

demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash tools/demo.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Every test, slow ones included.
test: lint
	$(VENV)/bin/pytest -q

# The quick subset (a couple of minutes): tests marked slow are left out.
test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
