# ssecfs -- build, test and demo targets.
#
#   make deps    install system packages (apt, as root, only what is missing) and
#                create .venv with the project installed in editable mode + test extras
#   make test    deps, lint, then the whole pytest suite: unit and core tests first, then the
#                e2e tests against Ceph RGW and SeaweedFS (CI=true: a missing FUSE fails)
#   make unit    unit + core tests (no network, no mount); needs neither apt nor root: its
#                .venv lacks only pyfuse3 until `make deps` completes it
#   make lint    ruff over ssecfs/ and tests/, mypy --strict over ssecfs/ (no apt, no root)
#   make install-helpers   (part of deps) symlink mount.ssecfs, mount.fuse.ssecfs into /sbin and
#                ssecfs into /usr/local/bin, pointing at this checkout's .venv, so that
#                `mount -t ssecfs`, /etc/fstab and the systemd units work (root or sudo -n only)
#   make bench   deps (and rclone), then bench/bench.py: ssecfs vs boto3, s3fs and rclone
#                (docs/performance.md)
#   make demo    deps, then scripts/demo.sh
#   make clean   stop test servers left under .state/, remove .venv and build droppings
#
# Everything is idempotent: a second `make deps` with nothing missing takes well under a second.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
# stamps: .venv with everything but pyfuse3 (unit, core, lint: no apt needed), and
# `pip install -e .[test]` done (pyfuse3 compiled against libfuse3) for this pyproject.toml
UNIT_STAMP := $(VENV)/.ssecfs-unit-deps
VENV_STAMP := $(VENV)/.ssecfs-deps
PYTEST_ARGS ?=

# Debian 12 packages: FUSE + build deps for pyfuse3 (compiled from source), the Ceph
# daemons for the local RGW test server, and tools the scripts use.
APT_PKGS := fuse3 libfuse3-dev pkg-config gcc \
	ceph-mon ceph-osd radosgw ceph-common \
	openssl curl uuid-runtime rsync git tar ca-certificates systemd s3fs

export DEBIAN_FRONTEND := noninteractive

.PHONY: all deps apt install-helpers uninstall-helpers test lint unit e2e bench demo demo-stop clean

all: test

deps: apt $(VENV_STAMP) install-helpers

# Install only what is missing; `apt-get update` only when something has to be installed.
# python3-venv / python3-dev are added only when the python3 on PATH lacks venv/ensurepip
# or its C headers (pyfuse3 compiles from source).
apt:
	@installed=" $$(dpkg-query -W -f='$${db:Status-Abbrev}$${Package}\n' $(APT_PKGS) 2>/dev/null \
	  | awk '/^ii /{printf "%s ", $$2}' || true)"; \
	missing=""; \
	for p in $(APT_PKGS); do \
	  [[ "$$installed" == *" $$p "* ]] || missing="$$missing $$p"; \
	done; \
	if ! command -v $(PYTHON) >/dev/null 2>&1; then \
	  missing="$$missing python3 python3-venv python3-dev"; \
	else \
	  $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	  inc=$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	  [[ -f "$$inc/Python.h" ]] || missing="$$missing python3-dev"; \
	fi; \
	if [[ -n "$$missing" ]]; then \
	  sudo=""; \
	  if [[ $$(id -u) != 0 ]]; then \
	    command -v sudo >/dev/null 2>&1 || { echo "make deps: need root to install:$$missing" >&2; exit 1; }; \
	    sudo="sudo -E"; \
	  fi; \
	  echo "make deps: apt-get install$$missing"; \
	  $$sudo apt-get update -q; \
	  $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(UNIT_STAMP): pyproject.toml scripts/requirements.py
	@if [[ ! -x $(VPY) ]] || ! $(VPY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
	  echo "make: creating $(VENV) with $$(command -v $(PYTHON))"; \
	  rm -rf $(VENV); \
	  $(PYTHON) -m venv $(VENV); \
	fi
	$(VPY) -m pip install -q --upgrade pip setuptools wheel
	$(VPY) -m pip install -q $$($(VPY) scripts/requirements.py --extra unit --without pyfuse3)
	$(VPY) -m pip install -q --no-deps -e .
	@touch $@

$(VENV_STAMP): $(UNIT_STAMP)
	$(VPY) -m pip install -q -e '.[test]'
	@touch $@

# mount(8) (util-linux libmount) looks for helpers in /sbin, /sbin/fs.d and /sbin/fs only: the
# `mount -t ssecfs` / fstab / .mount-unit tests need these links. Idempotent; a link pointing
# elsewhere is re-pointed here, a real file is left alone (with a warning). Not root and no
# password-less sudo: skipped with a note, and those tests skip (fail under CI=true).
SBINDIR ?= /sbin
BINDIR  ?= /usr/local/bin
HELPERS := $(SBINDIR)/mount.ssecfs=mount.ssecfs $(SBINDIR)/mount.fuse.ssecfs=mount.fuse.ssecfs \
	$(BINDIR)/ssecfs=ssecfs

install-helpers: $(VENV_STAMP)
	@todo=""; \
	for pair in $(HELPERS); do \
	  link=$${pair%%=*}; target="$(CURDIR)/$(VENV)/bin/$${pair##*=}"; \
	  [[ "$$(readlink "$$link" 2>/dev/null)" == "$$target" ]] && continue; \
	  if [[ -e "$$link" && ! -L "$$link" ]]; then \
	    echo "make install-helpers: $$link is not a symlink: leaving it alone" >&2; continue; \
	  fi; \
	  todo="$$todo $$link=$$target"; \
	done; \
	[[ -z "$$todo" ]] && exit 0; \
	sudo=""; \
	if [[ $$(id -u) != 0 ]]; then \
	  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else echo "make install-helpers: not root: skipped; run 'sudo make install-helpers'" \
	    "for mount -t ssecfs" >&2; exit 0; fi; \
	fi; \
	for pair in $$todo; do \
	  link=$${pair%%=*}; target=$${pair#*=}; \
	  echo "make install-helpers: $$link -> $$target"; \
	  $$sudo mkdir -p "$$(dirname "$$link")"; \
	  $$sudo ln -sfn "$$target" "$$link"; \
	done

# Remove only the links that point into this checkout.
uninstall-helpers:
	@for pair in $(HELPERS); do \
	  link=$${pair%%=*}; \
	  if [[ "$$(readlink "$$link" 2>/dev/null)" == "$(CURDIR)/"* ]]; then \
	    echo "rm $$link"; rm -f "$$link"; \
	  fi; \
	done

# pytest exit code 5 means "no tests collected": treat it as a failure, never as success.
define run_pytest
	@set +e; $(VPY) -m pytest -ra --durations=15 $(PYTEST_ARGS) $(1); rc=$$?; set -e; \
	if [[ $$rc == 5 ]]; then echo "make: FAILED: pytest collected no tests in $(1)" >&2; exit 1; fi; \
	exit $$rc
endef

# one session, fast tests first: a broken core shows in seconds, before any server starts
test: deps lint
	$(call run_pytest,tests/unit tests/core tests/e2e)

# ruff (pyproject's rules) over the package and the tests, mypy --strict over the package
lint: $(UNIT_STAMP)
	$(VENV)/bin/ruff check ssecfs tests bench scripts
	$(VENV)/bin/mypy ssecfs

unit: $(UNIT_STAMP)
	$(call run_pytest,tests/unit tests/core)

e2e: deps
	$(call run_pytest,tests/e2e)

# ssecfs against boto3, s3fs and rclone on a throw-away server (run it alone on the machine);
# e.g. make bench BENCH_ARGS="--server seaweedfs --size-mib 256"
BENCH_ARGS ?=
bench: APT_PKGS += rclone
bench: deps
	$(VPY) bench/bench.py $(BENCH_ARGS)

demo: deps
	bash scripts/demo.sh

demo-stop:
	bash scripts/demo.sh stop

clean:
	@if [[ -x $(VPY) && -d .state ]]; then \
	  find .state -name server.json -printf '%h\n' | while read -r d; do \
	    $(VPY) -m tests.servers stop "$$d" || true; \
	  done; \
	fi
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
