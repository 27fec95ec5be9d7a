# nbx - one non-recursive Makefile.  Objects go to $(BUILD); each module
# (proto, store, daemon, tools) is a static library; every
# tests/unit/*_test.c is its own Criterion binary.

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2 -g
SAN      ?=
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror
CPPFLAGS := -Iproto -Istore -Idaemon -Itools -MMD -MP
CFLAGS   := -std=c11 -D_GNU_SOURCE $(WARN) $(OPT) $(SAN)
LDFLAGS  := $(SAN)
LIBS     := -lssl -lcrypto -luv -llmdb -lmsgpackc -ljansson -linih -lpthread
TESTLIBS := -lcriterion

PREFIX   ?= /usr/local

PROTO_SRC  := $(sort $(wildcard proto/*.c))
STORE_SRC  := $(sort $(wildcard store/*.c))
DAEMON_SRC := $(filter-out daemon/main.c,$(sort $(wildcard daemon/*.c)))
TOOLS_SRC  := $(filter-out tools/nbxctl.c tools/nbxq.c,$(sort $(wildcard tools/*.c)))
UNIT_SRC   := $(sort $(wildcard tests/unit/*_test.c))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

LIBPROTO  := $(BUILD)/libproto.a
LIBSTORE  := $(BUILD)/libstore.a
LIBDAEMON := $(BUILD)/libdaemon.a
LIBTOOLS  := $(BUILD)/libtools.a
ALLLIBS   := $(LIBTOOLS) $(LIBDAEMON) $(LIBSTORE) $(LIBPROTO)

PROGS := $(if $(wildcard daemon/main.c),$(BUILD)/nbxd) \
	 $(if $(wildcard tools/nbxctl.c),$(BUILD)/nbxctl) \
	 $(if $(wildcard tools/nbxq.c),$(BUILD)/nbxq)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps test unit integration asan fuzz bench demo install clean
.DEFAULT_GOAL := all

all: $(PROGS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# An empty archive is still a valid archive, so modules not yet written
# link fine.
define lib_rule
$(1): $(call obj,$(2))
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	$$(AR) rcs $$@ $$^ $$(if $$^,,$$(BUILD)/.empty.o)
endef
$(BUILD)/.empty.o:
	@mkdir -p $(BUILD)
	echo 'extern int nbx__empty;' | $(CC) -x c -c - -o $@
$(LIBPROTO) $(LIBSTORE) $(LIBDAEMON) $(LIBTOOLS): | $(BUILD)/.empty.o
$(eval $(call lib_rule,$(LIBPROTO),$(PROTO_SRC)))
$(eval $(call lib_rule,$(LIBSTORE),$(STORE_SRC)))
$(eval $(call lib_rule,$(LIBDAEMON),$(DAEMON_SRC)))
$(eval $(call lib_rule,$(LIBTOOLS),$(TOOLS_SRC)))

$(BUILD)/nbxd: $(call obj,daemon/main.c) $(ALLLIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
$(BUILD)/nbxctl: $(call obj,tools/nbxctl.c) $(ALLLIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
$(BUILD)/nbxq: $(call obj,tools/nbxq.c) $(ALLLIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(ALLLIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(TESTLIBS)

deps:
	@./tools/install-deps.sh

# The test command: install what is missing, build, run every test.
test: deps
	@$(MAKE) --no-print-directory unit-run integration-run

unit-run: $(PROGS) $(UNIT_BIN)
	@BUILD=$(BUILD) ./tests/run-unit.sh $(UNIT_BIN)

integration-run: $(PROGS)
	@BUILD=$(BUILD) ./tests/run-integration.sh

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

FUZZ_SRC := $(sort $(wildcard tests/fuzz/*_fuzz.c))
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))
FUZZ_SECONDS ?= 30
build/fuzz/%: tests/fuzz/%.c $(PROTO_SRC) $(STORE_SRC)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -Iproto -Istore -g -O1 \
	    -fsanitize=fuzzer,address,undefined -o $@ $^ $(LIBS)
# Runs each harness for FUZZ_SECONDS over its corpus; new findings land in
# tests/fuzz/corpus/<name>/ and are kept as regression inputs.
fuzz: deps $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); \
	    mkdir -p tests/fuzz/corpus/$$n; \
	    echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=512 \
	        -artifact_prefix=tests/fuzz/corpus/$$n/crash- \
	        tests/fuzz/corpus/$$n || exit 1; done

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
