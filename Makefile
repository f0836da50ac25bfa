# Entry points a user runs. Every target first installs missing Debian packages (fast when
# present), configures the meson build once and rebuilds what changed.
BUILD ?= build
MPIRUN := scripts/mpirun.sh
BENCHES := collectives

.PHONY: all deps build demo test bench $(addprefix bench-,$(BENCHES)) clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja: | deps
	meson setup $(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

demo: build
	$(MPIRUN) -np 4 $(BUILD)/examples/collectives_demo

test: build
	scripts/run-tests.sh $(BUILD)

bench: $(addprefix bench-,$(BENCHES))

bench-collectives: build
	$(MPIRUN) -np 2 $(BUILD)/bench/bench_collectives

clean:
	rm -rf $(BUILD)
