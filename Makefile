# Alive: `make serve` and `make test` set everything up from a fresh clone.
PY_SYSTEM ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
MODELS ?= build/models
export ALIVE_MODEL_DIR ?= $(MODELS)
# Nothing may come from a model hub, ever.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
PROTO_OUT := alive_service/proto_gen
PROTO_STAMP := $(PROTO_OUT)/alive/v1/alive_pb2.py
MODEL_SOURCES := $(shell find alive_service/motion safety -name '*.py' -o -name '*.toml' -o -name '*.jsonl' -o -name '*.txt' 2>/dev/null)

.PHONY: setup serve test unit integration smoke models eval bench load lint clean buf promtool \
	buf-baseline

setup: $(VENV)/.stamp $(PROTO_STAMP) $(MODELS)/BUILD.json

# torch first, from the local CPU build, so nothing pulls a CUDA build; then the
# project; nudenet and facenet-pytorch without their deps (they pin onnxruntime and
# torchvision, which clash or do not exist here).
$(VENV)/.stamp: pyproject.toml
	test -x $(PY) || $(PY_SYSTEM) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[dev]'
	$(PIP) install --no-deps nudenet==3.4.2 facenet-pytorch==2.6.0
	touch $@

$(PROTO_STAMP): proto/alive/v1/alive.proto $(VENV)/.stamp
	mkdir -p $(PROTO_OUT)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) \
		--grpc_python_out=$(PROTO_OUT) proto/alive/v1/alive.proto
	sed -i 's/^from alive\.v1 import/from alive_service.proto_gen.alive.v1 import/' \
		$(PROTO_OUT)/alive/v1/alive_pb2_grpc.py
	touch $(PROTO_OUT)/__init__.py $(PROTO_OUT)/alive/__init__.py $(PROTO_OUT)/alive/v1/__init__.py

$(MODELS)/BUILD.json: $(VENV)/.stamp $(MODEL_SOURCES)
	$(PY) -m alive_service.artifacts --out $(MODELS)

models: $(MODELS)/BUILD.json

serve: setup
	$(VENV)/bin/alive-server

# promtool checks the metrics page in the tests; buf and the Node client install with
# `npm ci` from their lock files on first use (tests/npm.py).
test: setup promtool
	$(PY) -m pytest -q -x --durations=15

# The fast set: no server process, no built models (conftest.py marks the tests needing them).
unit: $(VENV)/.stamp $(PROTO_STAMP)
	$(PY) -m pytest -q -m "not integration and not models"

smoke: setup
	$(PY) -m tools.smoke

# Debian's prometheus package carries promtool; install it when apt is there (root).
promtool:
	-@command -v promtool >/dev/null || (command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends prometheus >/dev/null)

# The API's style (buf lint, default rules) and compatibility with the released v1.
BUF := tools/buf/node_modules/.bin/buf
$(BUF): tools/buf/package-lock.json
	npm ci --prefix tools/buf --no-audit --no-fund
	touch $@

buf: $(BUF)
	$(BUF) lint
	$(BUF) breaking --against tools/buf/alive-v1.binpb

# After a release: the proto as released becomes what later changes must stay compatible with.
buf-baseline: $(BUF)
	$(BUF) build --exclude-source-info -o tools/buf/alive-v1.binpb

# Some eval photos ship in Debian packages; install them when apt is there (root).
EVAL_DEBS := opencv-doc mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 \
	plasma-workspace-wallpapers
eval: setup
	-@dpkg -s $(EVAL_DEBS) >/dev/null 2>&1 || (command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(EVAL_DEBS))
	$(PY) -m tools.motion_eval --out build/eval

bench: setup
	$(PY) -m tools.bench

load: setup
	$(PY) -m tools.load

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf build $(PROTO_OUT) .pytest_cache
