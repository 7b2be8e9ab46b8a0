# Hyperwall — everything a newcomer needs, from a bare Debian/Ubuntu machine, as root.
#   make demo   bring up what exists and show it
#   make test   check the code (make check), then run the whole test suite
SHELL := /bin/bash
# The system's interpreter where there is one: the venv runs on it, and one from root's
# PATH (pyenv under /root, say) is one that no other user may execute.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) $(shell command -v python3.11 || command -v python3))
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages the platform and its tests drive (namespaces, firewall, VPN,
# DNS, real Xen clients for compatibility tests, traffic tools, the browser and its
# driver for the console's tests, ClamAV's daemon for sys-sec's antivirus).
APT_PACKAGES := iproute2 iptables nftables conntrack xenstore-utils wireguard-go \
	wireguard-tools dnsmasq-base bubblewrap iperf3 tcpdump procps psmisc iputils-ping \
	python3-venv gcc libc6-dev libhtp2 libhtp-dev curl chromium chromium-driver \
	clamav-daemon clamav
# For booting real Xen under QEMU (make test and make test-xen; the Xen smoke skips
# without them). Xen itself is not installed: builder/xen_image.py unpacks its packages.
XEN_APT_PACKAGES := qemu-system-x86 cpio
APT_STAMP := $(VENV)/.apt-stamp
XEN_APT_STAMP := $(VENV)/.xen-apt-stamp
# Named after the interpreter, so that a venv made from another one is made again.
PIP_STAMP := $(VENV)/.pip-stamp$(subst /,-,$(realpath $(PYTHON)))
# The engine's hot path compiled with mypyc (builder/compile_engine.py), rebuilt when any
# of netsec's sources changes: netsec runs its sources instead of a build older than them.
ENGINE_STAMP := $(VENV)/.engine-stamp
ENGINE_SOURCES := $(shell find netsec -name '*.py' -not -path '*/_*') builder/compile_engine.py

.PHONY: install check test test-unit test-xen demo bench lint clean

install: $(APT_STAMP) $(PIP_STAMP) $(ENGINE_STAMP)

$(APT_STAMP): PACKAGES = $(APT_PACKAGES)
$(XEN_APT_STAMP): PACKAGES = $(XEN_APT_PACKAGES)
# The Makefile too: a package added to these lists is installed on the next make install.
$(APT_STAMP) $(XEN_APT_STAMP): Makefile
	@missing=$$(for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "== installing system packages: $$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi
	@mkdir -p $(VENV) && touch $@

$(PIP_STAMP): pyproject.toml
	@echo "== creating $(VENV) with the project and its Python dependencies"
	@if [ ! -x $(PY) ]; then $(PYTHON) -m venv $(VENV); \
	elif [ "$$(readlink -f $(PY))" != "$$(readlink -f $(PYTHON))" ]; then \
		$(PYTHON) -m venv --clear $(VENV) && touch $(APT_STAMP); fi
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@$(PY) -m netsec.app.htp   # the libhtp binding, built into the checkout
	@chmod -R go+rX $(VENV) netsec/app/_htp_build   # every user runs `hyperwall` from here
	@rm -f $(VENV)/.pip-stamp* && touch $@

$(ENGINE_STAMP): $(PIP_STAMP) $(ENGINE_SOURCES)
	@$(PY) -m builder.compile_engine
	@chmod -R go+rX netsec && touch $@

# QEMU too: the real-Xen smoke subset (tests/integration/test_xen_smoke.py, 70-130 s under TCG) runs here.
# make check first: a lint or type error fails CI before a test starts.
# Then the engine's unit suite once more on the pure-Python modules: both builds must agree.
test: install check $(XEN_APT_STAMP)
	$(VENV)/bin/pytest tests --ignore=tests/xen
	HYPERWALL_PURE_PYTHON=1 $(VENV)/bin/pytest -q tests/unit

# Real Xen under QEMU: Hyperwall's dom0 code against Xen itself (the image is built once
# into /var/cache/hyperwall/xen). make test runs only its smoke subset.
test-xen: install $(XEN_APT_STAMP)
	$(VENV)/bin/pytest -v -s tests/xen

test-unit: install
	$(VENV)/bin/pytest -m "not root and not oxenstored" tests

demo: install
	$(PY) -m dom0.sim.demo

bench: install
	$(PY) bench/xenstore.py
	$(PY) bench/ids.py
	$(PY) bench/domains.py
	$(PY) bench/datapath.py

# ruff, then mypy as pyproject.toml sets it: strict on the cores, plain on the rest.
# mypy keeps a cache in .mypy_cache, so a run after the first takes seconds.
check: lint
	$(VENV)/bin/mypy

lint: install
	$(VENV)/bin/ruff check .

clean:
	$(if $(wildcard $(PY)),$(PY) -m builder.compile_engine --clean)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
