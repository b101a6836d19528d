# kubetune developer commands. `make demo` and `make test` work from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CACHE ?= $(HOME)/.cache/kubetune
UV_VERSION := 0.13.8
UV := $(CACHE)/uv-$(UV_VERSION)/bin/uv
EXTRAS ?= operator,train,serve,eval,storage,trackers,dev
export UV_CACHE_DIR ?= $(CACHE)/uv-cache
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONDONTWRITEBYTECODE := 1
PYTEST_ARGS ?=
# Type-checked in `make lint`: every package (the runtime with its torch side, and the operator).
MYPY_PATHS := runtime/kubetune operator/kubetune_operator

.PHONY: help venv lint crds test test-unit test-integration test-node controlplane platform vllm node-setup cluster-up \
	cluster-down cluster-status node-up node-down node-status demo clean

help:
	@echo "make demo      train, export and serve a tiny model offline on CPU (examples/quickstart)"
	@echo "make test      create the environment, lint, and run every test (builds the test control plane once)"
	@echo "make lint      ruff, mypy, import contracts"
	@echo "make crds      regenerate crds/ from the API types"
	@echo "make vllm      install vLLM's CPU build for the vllm engine tests (cached in ~/.cache/kubetune)"
	@echo "make cluster-up / cluster-down   a local etcd + kube-apiserver + controller-manager with the CRDs (prints KUBECONFIG)"
	@echo "make node-up / node-down         a real one-node cluster (pods run) with the operator deployed (root; prints KUBECONFIG)"

$(UV):
	$(PYTHON) -m venv $(CACHE)/uv-$(UV_VERSION)
	$(CACHE)/uv-$(UV_VERSION)/bin/pip install -q uv==$(UV_VERSION)

# The venv is rebuilt when pyproject.toml changes; wheels come from uv's cache outside the clone.
# Bytecode is compiled at install: with PYTHONDONTWRITEBYTECODE every process (CLI tests, torchrun workers) would
# otherwise recompile torch and transformers from source, close to a minute each on a small machine.
$(VENV)/.installed: pyproject.toml | $(UV)
	@test -x $(BIN)/python || $(UV) venv -q -p $(PYTHON) $(VENV)
	@start=$$(date +%s); \
	$(UV) pip install -q --compile-bytecode -p $(BIN)/python -e ".[$(EXTRAS)]" && \
	echo "environment ready in $$(( $$(date +%s) - start ))s ($(VENV), extras $(EXTRAS))"
	@touch $@

venv: $(VENV)/.installed

lint: venv
	$(BIN)/ruff check $(wildcard runtime operator tests bench hack)
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/lint-imports

crds: venv
	$(BIN)/kubetune crds --output-dir crds
	$(BIN)/kubetune crds --output-dir manifests/crds

controlplane:
	bash hack/build-controlplane.sh

# The platform tools the GitOps-health and queueing tests run: kstatus (sigs.k8s.io/cli-utils) and Kueue's
# controller, built from their Go modules once into $(CACHE)/platform, reused afterwards.
platform:
	bash hack/build-platform.sh kstatus && bash hack/build-platform.sh kueue

# vLLM's CPU build in its own environment (its torch differs from the runtime's), for the vllm engine tests;
# installed once into $(CACHE)/vllm-<version>, reused afterwards.
vllm: | $(UV)
	KUBETUNE_CACHE=$(CACHE) PYTHON=$(PYTHON) bash hack/setup-vllm.sh

# The one-node cluster's parts: Debian packages (root), node binaries from Go modules, images built locally and
# imported into containerd. Each step reuses its cache and does nothing when its inputs did not change. The image
# builds (mostly downloads and disk) run alongside the Go builds (mostly CPU); their log is printed when they fail.
node-setup:
	bash hack/node-prereqs.sh
	@mkdir -p $(CACHE); bash hack/build-images.sh > $(CACHE)/build-images.log 2>&1 & images=$$!; \
	bash hack/build-controlplane.sh && bash hack/build-node.sh; built=$$?; \
	if ! wait $$images; then tail -40 $(CACHE)/build-images.log; exit 1; fi; \
	grep -E '^>>' $(CACHE)/build-images.log || true; exit $$built

test-unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: venv controlplane platform vllm
	$(BIN)/pytest tests/integration tests/e2e $(PYTEST_ARGS)

test-node: venv node-setup
	$(BIN)/pytest tests/node $(PYTEST_ARGS)

test: lint node-setup platform vllm
	$(BIN)/pytest tests $(PYTEST_ARGS)

# A detached etcd + kube-apiserver + kube-controller-manager with the CRDs installed; state and logs in
# $(CACHE)/cluster. Prints the `export KUBECONFIG=...` line to use; cluster-down stops the recorded PIDs.
cluster-up: venv controlplane
	@KUBETUNE_CACHE=$(CACHE) $(BIN)/python -m tests.support.cluster up

cluster-down: venv
	@KUBETUNE_CACHE=$(CACHE) $(BIN)/python -m tests.support.cluster down

cluster-status: venv
	@KUBETUNE_CACHE=$(CACHE) $(BIN)/python -m tests.support.cluster status || true

# A real one-node cluster (kubelet, containerd, CoreDNS, Kubeflow training-operator) with the kubetune operator
# deployed from manifests/ and the locally built images; state and logs in $(CACHE)/node/state. Root only.
node-up: venv node-setup
	@KUBETUNE_CACHE=$(CACHE) $(BIN)/python -m tests.support.nodecli up

node-down: venv
	@KUBETUNE_CACHE=$(CACHE) $(BIN)/python -m tests.support.nodecli down

node-status: venv
	@KUBETUNE_CACHE=$(CACHE) $(BIN)/python -m tests.support.nodecli status || true

demo: venv
	$(BIN)/python examples/quickstart/demo.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
