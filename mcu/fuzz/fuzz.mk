# libFuzzer targets of the C parsers, built with clang 14, ASan and UBSan.
#
#   make -C mcu fuzz-seeds   build every target and run it once over each
#                            seed of fuzz/corpus/<target> (part of `test`)
#   make -C mcu fuzz         fuzz each target for FUZZ_TIME (seconds, or 2m); new
#                            inputs go to build/fuzz/new/<target>, a crash
#                            to build/fuzz/crash-<target>-*
#
# FUZZ_TARGETS=json limits either to some targets.

FUZZ_CC      ?= clang-14
FUZZ_TIME    ?= 30
FUZZ_TARGETS ?= json header chunk answer keyset
FUZZ_OUT     := $(BUILD)/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS  := -std=c99 -g -O1 $(WARN) -D_POSIX_C_SOURCE=200809L $(FUZZ_SAN)
FUZZ_BINS    := $(addprefix $(FUZZ_OUT)/fuzz_,$(FUZZ_TARGETS))

# The library as the targets see it: compiled with the sanitizers and
# coverage, archived so that each target links only what it uses.
FUZZ_LIB_OBJS := $(patsubst $(MCU)/%.c,$(FUZZ_OUT)/obj/%.o,$(LIB_SRCS) $(PORT_SRCS))
FUZZ_LIB      := $(FUZZ_OUT)/libotaflow-fuzz.a

.PHONY: fuzz fuzz-seeds fuzz-build
test: fuzz-seeds

$(FUZZ_OUT)/obj/%.o: $(MCU)/%.c $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(INCLUDES) -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	rm -f $@ && ar rcs $@ $^

# The JSON target needs only the reader, so it builds even when the rest of
# the library does not.
$(FUZZ_OUT)/fuzz_json: $(MCU)/fuzz/fuzz_json.c $(MCU)/fuzz/fuzz.h $(FUZZ_OUT)/obj/src/json.o
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(INCLUDES) $(filter-out %.h,$^) -o $@

$(FUZZ_OUT)/fuzz_%: $(MCU)/fuzz/fuzz_%.c $(MCU)/test/test_rng.c $(MCU)/fuzz/fuzz_keys.c $(MCU)/fuzz/fuzz.h $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(INCLUDES) $(MCU)/fuzz/fuzz_$*.c $(MCU)/test/test_rng.c $(MCU)/fuzz/fuzz_keys.c \
		$(FUZZ_LIB) -lmbedcrypto -o $@

fuzz-build: $(FUZZ_BINS)

fuzz-seeds: $(FUZZ_BINS)
	$(MCU)/fuzz/run.sh seeds $(FUZZ_OUT) $(MCU)/fuzz/corpus $(FUZZ_TARGETS)

fuzz: $(FUZZ_BINS)
	$(MCU)/fuzz/run.sh fuzz $(FUZZ_OUT) $(MCU)/fuzz/corpus $(FUZZ_TIME) $(FUZZ_TARGETS)
