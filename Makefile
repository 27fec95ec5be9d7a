# nbx - one non-recursive Makefile.  Objects go to $(BUILD); every
# tests/unit/*_test.c is its own Criterion binary.
#
# The code is in modules, each a folder and a static library, lowest
# first; a module's sources are compiled with its own and the lower
# modules' include paths only (INC_*), so an include of a higher layer's
# header does not compile, and tests/layers.sh (in `make test`) says so by
# name and refuses a cycle between modules.  A program or test links the
# modules it uses and no other library.
#
#   proto   pure core: clocks, merge, change and frame codec, policy
#   store   LMDB persistence                          over proto
#   conf    the node configuration reader             over proto
#   pki     node identities in X.509 certificates     over proto
#   sync    the sync protocol, sans I/O: session state
#           machine, egress filter, local writes      over store, proto
#   daemon  nbxd's shell: libuv, TLS, peers, control  over all of the above
#   tools   nbxctl and nbxq                           over store, conf, pki, proto

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2 -g
SAN      ?=
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wformat=2 -Werror
CPPFLAGS  = $(MODINC) -MMD -MP
CFLAGS   := -std=c11 -D_GNU_SOURCE $(WARN) $(OPT) $(SAN)
LDFLAGS  := $(SAN)
TESTLIBS := -lcriterion

PREFIX   ?= /usr/local

# module folders, and the include paths each module's sources get
DIR_proto  := proto
DIR_store  := store
DIR_conf   := daemon/conf
DIR_pki    := daemon/pki
DIR_sync   := daemon/sync
DIR_daemon := daemon
DIR_tools  := tools
INC_proto  := -Iproto
INC_store  := $(INC_proto) -Istore
INC_conf   := $(INC_proto) -Idaemon/conf
INC_pki    := $(INC_proto) -Idaemon/pki
INC_sync   := $(INC_store) -Idaemon/sync
INC_daemon := $(INC_sync) -Idaemon/conf -Idaemon/pki -Idaemon
INC_tools  := $(INC_store) -Idaemon/conf -Idaemon/pki -Itools
INC_tests  := $(INC_daemon) -Itools -Itests/unit -Itests/rogue
# the libraries each module's code calls, itself and the modules below
SYS_proto  := -lmsgpackc -linih
SYS_store  := -llmdb -lcrypto $(SYS_proto)
SYS_conf   := $(SYS_proto)
SYS_pki    := -lcrypto $(SYS_proto)
SYS_sync   := -ljansson $(SYS_store)
SYS_daemon := -lssl -luv -lpthread $(SYS_sync)
SYS_tools  := -ljansson $(SYS_store)

# a more specific pattern (a shorter stem) wins: daemon/sync/x.o is sync
$(BUILD)/proto/%.o:       MODINC = $(INC_proto)
$(BUILD)/store/%.o:       MODINC = $(INC_store)
$(BUILD)/daemon/%.o:      MODINC = $(INC_daemon)
$(BUILD)/daemon/conf/%.o: MODINC = $(INC_conf)
$(BUILD)/daemon/pki/%.o:  MODINC = $(INC_pki)
$(BUILD)/daemon/sync/%.o: MODINC = $(INC_sync)
$(BUILD)/tools/%.o:       MODINC = $(INC_tools)
$(BUILD)/tests/%.o:       MODINC = $(INC_tests)

MAINS      := daemon/main.c tools/nbxctl.c tools/nbxq.c
src_of      = $(filter-out $(MAINS),$(sort $(wildcard $(DIR_$(1))/*.c)))
MODULES    := proto store conf pki sync daemon tools
UNIT_SRC   := $(sort $(wildcard tests/unit/*_test.c))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))
lib = $(BUILD)/lib$(1).a

# An empty archive is still a valid archive, so modules not yet written
# link fine.
define lib_rule
$(call lib,$(1)): $(call obj,$(call src_of,$(1)))
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	$$(AR) rcs $$@ $$^ $$(if $$^,,$$(BUILD)/.empty.o)
$(call lib,$(1)): | $(BUILD)/.empty.o
endef
$(BUILD)/.empty.o:
	@mkdir -p $(BUILD)
	echo 'extern int nbx__empty;' | $(CC) -x c -c - -o $@
$(foreach m,$(MODULES),$(eval $(call lib_rule,$(m))))

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# Each program: its main, the modules it uses (highest first), their
# libraries.  nbxq reads the store directly: no libuv, no OpenSSL's TLS.
NBXD_MODS   := daemon sync store conf pki proto
NBXCTL_MODS := tools conf pki proto
NBXQ_MODS   := tools store conf proto
mods_libs   = $(foreach m,$(1),$(call lib,$(m)))

PROGS := $(BUILD)/nbxd $(BUILD)/nbxctl $(BUILD)/nbxq
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps test test-stress unit integration layers asan fuzz bench demo install clean
.DEFAULT_GOAL := all

all: $(PROGS)

$(BUILD)/nbxd: $(call obj,daemon/main.c) $(call mods_libs,$(NBXD_MODS))
	$(CC) $(LDFLAGS) -o $@ $^ $(SYS_daemon)
$(BUILD)/nbxctl: $(call obj,tools/nbxctl.c) $(call mods_libs,$(NBXCTL_MODS))
	$(CC) $(LDFLAGS) -o $@ $^ -ljansson -lcrypto -linih
$(BUILD)/nbxq: $(call obj,tools/nbxq.c) $(call mods_libs,$(NBXQ_MODS))
	$(CC) $(LDFLAGS) -o $@ $^ -ljansson $(SYS_store)

# Test tools, built for the integration tests: a rogue peer that speaks
# real mutual TLS and then sends crafted traffic (tests/rogue/).
TEST_PROGS := $(BUILD)/nbx-rogue
$(BUILD)/nbx-rogue: $(call obj,$(sort $(wildcard tests/rogue/*.c))) \
    $(call mods_libs,$(NBXD_MODS))
	$(CC) $(LDFLAGS) -o $@ $^ $(SYS_daemon)

# A unit test links the module it tests and those below it (TEST_MOD_x;
# by default the daemon's whole stack).
TEST_MOD_change_test      := proto
TEST_MOD_change_wire_test := proto
TEST_MOD_crdt_test        := proto
TEST_MOD_frame_test       := proto
TEST_MOD_hlc_test         := proto
TEST_MOD_mpscan_test      := proto
TEST_MOD_mpwrite_test     := proto
TEST_MOD_policy_test      := conf
TEST_MOD_recon_test       := proto
TEST_MOD_crdt_prop_test   := store
TEST_MOD_store_test       := store
TEST_MOD_items_test       := store
TEST_MOD_config_test      := conf
TEST_MOD_egress_test      := sync
TEST_MOD_session_test     := sync
TEST_MOD_session_v2_test  := sync
TEST_MOD_writes_test      := sync
TEST_MOD_edges_prop_test  := sync
TEST_MOD_recon_prop_test  := sync
TEST_MOD_ca_test          := tools
TEST_MOD_importline_test  := tools
TEST_MOD_nbxq_test        := tools
TEST_MOD_tls_test         := daemon_tools
# the modules under each, highest first
BELOW_proto        := proto
BELOW_store        := store proto
BELOW_conf         := conf proto
BELOW_sync         := sync store proto
BELOW_tools        := tools store conf pki proto
BELOW_daemon       := daemon sync store conf pki proto
BELOW_daemon_tools := tools daemon sync store conf pki proto
SYS_daemon_tools   := $(SYS_daemon)
test_mod = $(or $(TEST_MOD_$(1)),daemon)
define test_rule
$(BUILD)/tests/$(1): $(BUILD)/tests/unit/$(1).o \
    $(call mods_libs,$(BELOW_$(call test_mod,$(1))))
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $(SYS_$(call test_mod,$(1))) $$(TESTLIBS)
endef
$(foreach t,$(patsubst tests/unit/%.c,%,$(UNIT_SRC)),$(eval $(call test_rule,$(t))))

deps:
	@./tools/install-deps.sh

# The test command: install what is missing, build, run every test.
test: deps
	@$(MAKE) --no-print-directory layers unit-run integration-run

# The layering of the modules, checked from the sources; the check first
# shows that it refuses each kind of breach, made on purpose.
layers:
	@python3 tests/layers.py --selftest >/dev/null || python3 tests/layers.py --selftest
	@python3 tests/layers.py .

unit-run: $(PROGS) $(UNIT_BIN)
	@BUILD=$(BUILD) ./tests/run-unit.sh $(UNIT_BIN)

integration-run: $(PROGS) $(TEST_PROGS)
	@BUILD=$(BUILD) ./tests/run-integration.sh

# The test command again and again: idle, with every core busy, and on
# one core (tests/stress.sh; STRESS_N=3 passes of the first two kinds).
test-stress: deps
	@$(MAKE) --no-print-directory $(PROGS) $(UNIT_BIN) $(TEST_PROGS)
	@BUILD=$(BUILD) ./tests/stress.sh

unit: deps
	@$(MAKE) --no-print-directory unit-run

integration: deps
	@$(MAKE) --no-print-directory integration-run

# Same tests under AddressSanitizer + UndefinedBehaviorSanitizer, in a
# separate build tree.
asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan CC=clang \
	    OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	    unit-run integration-run

# ------------------------------------------------------------------
# Fuzzing: libFuzzer harnesses tests/fuzz/<name>.c (clang), each linked
# with the proto, store and daemon sources (not daemon/main.c) built once
# into build/fuzz/obj with sanitizer and coverage instrumentation.  The
# harness bodies are plain functions nbx_fuzz_<name>; NBX_LIBFUZZER adds
# the libFuzzer entry points, and tests/unit/fuzz_replay_test.c replays
# every corpus file through the same bodies in the unit tests.
#
#   make fuzz [FUZZ_SECONDS=N]  each harness N s (30) over its corpus;
#                               new inputs land in tests/fuzz/corpus/<name>/
#   make fuzz-ci                the same, FUZZ_SECONDS (30, or from the
#                               environment) each, new inputs to
#                               build/fuzz/ci/ (the corpus only gains
#                               findings); any crash, leak or timeout
#                               fails it, after every harness ran
#   make fuzz-cmin              shrinks each corpus to a small set with the
#                               same edge coverage (libFuzzer set cover)
#   make fuzz-seeds             regenerates the binary seeds (seed-*) with
#                               tests/fuzz/seedgen.c
# Findings are kept as tests/fuzz/corpus/<name>/crash-<sha1> (leak-,
# timeout-, oom-) unless the corpus holds the same bytes already;
# reproduce with build/fuzz/<name> FILE.  The replay test skips these
# until they are renamed regress-<what> once fixed.
FUZZ_SRC := $(sort $(wildcard tests/fuzz/*_fuzz.c))
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))
FUZZ_SECONDS ?= 30
FUZZ_CC     := clang
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -DNBX_LIBFUZZER $(WARN) -g -O1 \
	       -fno-omit-frame-pointer \
	       -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OBJ    := $(patsubst %.c,build/fuzz/obj/%.o,\
	       $(foreach m,proto store conf pki sync daemon,$(call src_of,$(m))))
FUZZ_LIB    := build/fuzz/libnbxfuzz.a
FUZZ_ENV    := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	       UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
FUZZ_OPTS   := -rss_limit_mb=1024 -timeout=10 -print_final_stats=1
# -dict=tests/fuzz/<name>.dict when the harness has one
fuzz_dict    = $$(test -f tests/fuzz/$$n.dict && echo -dict=tests/fuzz/$$n.dict)
# Moves libFuzzer's artifacts (crash-*, leak-*, timeout-*, oom-*) from $$a
# into the corpus $$d, except those whose bytes the corpus already holds
# (a known finding found again).
fuzz_keep    = for k in $$a/*; do [ -f "$$k" ] || continue; \
	    s=$$(sha1sum <"$$k" | cut -c1-40); \
	    if sha1sum $$d/* 2>/dev/null | cut -c1-40 | grep -qx "$$s"; then \
	        rm -f "$$k"; else mv "$$k" $$d/; \
	        echo "fuzz: finding kept: $$d/$$(basename $$k)"; fi; done

build/fuzz/%: MODINC = $(INC_tests)
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link \
	    -c $< -o $@
$(FUZZ_LIB): $(FUZZ_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^
build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) -MF $@.d -MT $@ $(FUZZ_CFLAGS) \
	    -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB) $(SYS_daemon)
# The seed generator is an ordinary program over the normal libraries.
build/fuzz/seedgen: tests/fuzz/seedgen.c $(call mods_libs,$(NBXD_MODS))
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -MF $@.d -MT $@ $(CFLAGS) $(LDFLAGS) -o $@ $< \
	    $(call mods_libs,$(NBXD_MODS)) $(SYS_daemon)

.PHONY: fuzz-ci fuzz-cmin fuzz-seeds
fuzz: deps $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); \
	    d=tests/fuzz/corpus/$$n; a=build/fuzz/artifacts/$$n; \
	    mkdir -p $$d $$a; \
	    echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	    $(FUZZ_ENV) $$f $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) \
	        $(fuzz_dict) -artifact_prefix=$$a/ $$d; r=$$?; \
	    $(fuzz_keep); [ $$r -eq 0 ] || exit 1; done

# Every harness runs even after one fails; the summary names the
# failures and the run fails if there is any.
fuzz-ci: deps $(FUZZ_BIN)
	@t0=$$(date +%s); failed=""; \
	for f in $(FUZZ_BIN); do n=$$(basename $$f); \
	    d=tests/fuzz/corpus/$$n; a=build/fuzz/artifacts/$$n; \
	    mkdir -p build/fuzz/ci/$$n $$d $$a; \
	    log=build/fuzz/ci/$$n.log; t1=$$(date +%s); \
	    if $(FUZZ_ENV) $$f $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) \
	        $(fuzz_dict) -artifact_prefix=$$a/ \
	        build/fuzz/ci/$$n $$d >$$log 2>&1; then \
	        r=ok; else r=FAILED; failed="$$failed $$n"; \
	        grep -E -A40 'ERROR: |runtime error|fuzz check failed|==[0-9]+== ' \
	            $$log | head -80; fi; \
	    $(fuzz_keep); \
	    echo "fuzz-ci: $$n $$r in $$(( $$(date +%s) - t1 ))s," \
	        "$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log)" \
	        "execs, $$(ls tests/fuzz/corpus/$$n | wc -l) corpus files"; \
	done; \
	echo "fuzz-ci: $$(( $$(date +%s) - t0 ))s for $(words $(FUZZ_BIN)) harnesses"; \
	if [ -n "$$failed" ]; then \
	    echo "fuzz-ci: failed:$$failed (inputs in tests/fuzz/corpus/<name>/, logs in build/fuzz/ci/)"; \
	    exit 1; fi

# Named inputs (seed-*, hostile-*, regress-*, crash-* ...) are kept; of
# the inputs libFuzzer named by their SHA-1, only a small set that covers
# every edge the whole corpus covers (FUZZ_CMIN_OPTS="-merge=1" keeps
# every input that adds a feature, hit counts included: many more files).
FUZZ_CMIN_OPTS ?= -set_cover_merge=1 -use_counters=0
fuzz-cmin: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); d=tests/fuzz/corpus/$$n; \
	    c=build/fuzz/cmin/$$n; rm -rf $$c; mkdir -p $$c $$d; \
	    $(FUZZ_ENV) $$f $(FUZZ_CMIN_OPTS) -rss_limit_mb=1024 -timeout=10 \
	        -artifact_prefix=$$c.artifact- $$c $$d \
	        >$$c.log 2>&1 || { tail -n 30 $$c.log; exit 1; }; \
	    for k in $$d/*; do b=$$(basename "$$k"); \
	        if printf '%s\n' "$$b" | grep -qE '^[0-9a-f]{40}$$'; then \
	            rm -f "$$k"; fi; done; \
	    have=$$(sha1sum $$d/* 2>/dev/null | cut -c1-40); \
	    for k in $$c/*; do b=$$(basename "$$k"); \
	        printf '%s\n' "$$have" | grep -qx "$$b" || cp "$$k" $$d/; done; \
	    echo "fuzz-cmin: $$n: $$(ls $$d | wc -l) files," \
	        "$$(du -sk $$d | cut -f1) KiB"; done

fuzz-seeds: build/fuzz/seedgen
	./build/fuzz/seedgen tests/fuzz/corpus

bench: deps all
	@./tests/bench/run.sh

demo: deps all
	@./tools/demo.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
.SECONDARY:
