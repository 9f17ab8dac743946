# depot: `make serve` runs the embedded default on 127.0.0.1:8080; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := curl nginx wrk skopeo docker-registry systemd openssl prometheus chromium fonts-liberation \
	$(shell cat tests/clients/*.apt 2>/dev/null)
CLIENTS := curl nginx wrk npm node git skopeo docker-registry openssl systemd-analyze prometheus promtool chromium \
	$(shell cat tests/clients/*.check 2>/dev/null)

.PHONY: serve test venv test-deps apt-deps check-clients lint bench clean

$(BIN)/depot: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "depot needs Python 3.11+"'
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BIN)/depot

venv: $(BIN)/depot

serve: venv
	$(BIN)/depot serve

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v npm >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm; }

test-deps: venv apt-deps
	$(BIN)/pip install --quiet -e '.[test]'
	@for f in tests/clients/*.pip; do [ -e "$$f" ] || continue; $(BIN)/pip install --quiet -r "$$f" || exit 1; done
	@for f in tests/clients/*.sh; do [ -e "$$f" ] || continue; echo "running $$f"; VENV=$(VENV) bash "$$f" || { echo "FAILED: $$f" >&2; exit 1; }; done

check-clients:
	@for c in $(CLIENTS); do command -v $$c >/dev/null || { echo "missing client: $$c" >&2; exit 1; }; done
	@for c in pip twine uv; do test -x $(BIN)/$$c || { echo "missing client: $(BIN)/$$c" >&2; exit 1; }; done

lint: test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy proxy cache registry upstreams
	$(BIN)/lint-imports

test: test-deps check-clients lint
	$(BIN)/python -m pytest -n 4 --dist loadfile -q

bench: test-deps
	$(BIN)/python bench/hit_throughput.py

clean:
	rm -rf $(VENV) depot-data
