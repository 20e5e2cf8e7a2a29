# Cortex-M4 build (included by mcu/Makefile): mbedTLS from Debian's source
# package, the library, and test programs for QEMU's mps2-an386 with
# newlib-nano and semihosting (stdio, files and argv from the host).
#
#   make -C mcu cross           $(BUILD)/cortex-m4/{libmbedcrypto.a,libotaflow.a,*.elf}
#   make -C mcu qemu            run the test programs under QEMU
#   make -C mcu qemu-selftest   only the pipeline's self-test (no library)
#   make -C mcu footprint       flash/RAM per archive and object of a test ELF
#
# A test program is declared with m4_elf (see below); each ELF comes with a
# linker map, NAME.map, that hack/mcu-footprint reads.

M4_DIR := $(MCU)/target/cortex-m4
M4     := $(BUILD)/cortex-m4

ARM_CC ?= arm-none-eabi-gcc
ARM_AR ?= arm-none-eabi-ar
M4_ARCH  := -mcpu=cortex-m4 -mthumb -mfloat-abi=soft
M4_OPT   ?= -Os -ffunction-sections -fdata-sections
# newlib-nano headers everywhere, so objects agree with the libc they link.
M4_BASE  := $(M4_ARCH) $(M4_OPT) -g --specs=nano.specs

# mbedTLS: Debian's source package, unpacked by hack/mcu-mbedtls-source.sh;
# $(M4)/mbedtls links to the tree.
M4_MBEDTLS       := $(M4)/mbedtls
M4_MBEDTLS_STAMP := $(M4)/.mbedtls-tree
M4_MBEDTLS_LIB   := $(M4)/libmbedcrypto.a
M4_MBEDTLS_DEFS  := -DMBEDTLS_CONFIG_FILE='"mbedtls_config.h"' -I$(M4_DIR) -I$(M4_MBEDTLS)/include
# The modules mbedtls_config.h enables; --gc-sections drops what is unused.
M4_MBEDTLS_MODULES := aes asn1parse asn1write bignum cipher cipher_wrap constant_time ecdh ecdsa ecp \
	ecp_curves gcm md memory_buffer_alloc platform platform_util sha256 sha512
M4_MBEDTLS_OBJS := $(patsubst %,$(M4)/mbedtls-obj/%.o,$(M4_MBEDTLS_MODULES))

M4_CFLAGS   := -std=c99 $(M4_BASE) $(WARN)
M4_INCLUDES := $(INCLUDES) -I$(MCU)/test -I$(M4_DIR) $(M4_MBEDTLS_DEFS)

# The library, as for the host.
M4_LIB  := $(M4)/libotaflow.a
M4_OBJS := $(patsubst $(MCU)/%.c,$(M4)/obj/%.o,$(LIB_SRCS) $(PORT_SRCS))

# Board support: the vector table (linked as an object, so it is always
# there) and an archive of measure.c and the emulator's ota_crypto_random
# (a test program's own definition wins over the archive's).
M4_LD         := $(M4_DIR)/mps2-an386.ld
M4_STARTUP    := $(M4)/board/startup.o
M4_BOARD_LIB  := $(M4)/libm4board.a
M4_BOARD_OBJS := $(M4)/board/measure.o $(M4)/board/board_random.o
M4_LDFLAGS    := $(M4_ARCH) -T$(M4_LD) --specs=nano.specs --specs=rdimon.specs -Wl,--gc-sections

.PHONY: cross qemu qemu-selftest footprint m4-tools
m4-tools:
	@command -v $(ARM_CC) >/dev/null || { echo "cortex-m4: $(ARM_CC) is missing: run hack/ensure-mcu-tools.sh" >&2; exit 1; }

$(M4_MBEDTLS_STAMP): $(ROOT)/hack/mcu-mbedtls-source.sh | m4-tools
	@mkdir -p $(M4)
	tree=$$($(ROOT)/hack/mcu-mbedtls-source.sh $(BUILD)/mbedtls-src) && ln -sfn "$$tree" $(M4_MBEDTLS)
	touch $@

# Third-party code: its own warnings are not ours to fail on.
$(M4)/mbedtls-obj/%.o: $(M4_MBEDTLS_STAMP) $(M4_DIR)/mbedtls_config.h
	@mkdir -p $(dir $@)
	$(ARM_CC) -std=c99 $(M4_BASE) -w $(M4_MBEDTLS_DEFS) -c $(M4_MBEDTLS)/library/$*.c -o $@

$(M4_MBEDTLS_LIB): $(M4_MBEDTLS_OBJS)
	rm -f $@ && $(ARM_AR) rcs $@ $^

$(M4)/obj/%.o: $(MCU)/%.c $(LIB_HDRS) $(M4_MBEDTLS_STAMP) $(M4_DIR)/mbedtls_config.h
	@mkdir -p $(dir $@)
	$(ARM_CC) $(M4_CFLAGS) $(M4_INCLUDES) -c $< -o $@

$(M4_LIB): $(M4_OBJS)
	rm -f $@ && $(ARM_AR) rcs $@ $^

$(M4)/board/%.o: $(M4_DIR)/%.c $(M4_DIR)/measure.h $(LIB_HDRS) $(M4_MBEDTLS_STAMP) $(M4_DIR)/mbedtls_config.h
	@mkdir -p $(dir $@)
	$(ARM_CC) $(M4_CFLAGS) $(M4_INCLUDES) -c $< -o $@

$(M4_BOARD_LIB): $(M4_BOARD_OBJS)
	rm -f $@ && $(ARM_AR) rcs $@ $^

# $(call m4_elf,NAME,SOURCES,LIBS,CFLAGS,DEPS) declares $(M4)/NAME.elf (and
# $(M4)/NAME.map): the C SOURCES, compiled with M4_CFLAGS and CFLAGS into
# $(M4)/elf/NAME/ (after DEPS, generated headers say), linked with LIBS
# (libotaflow.a, say), the board support and mbedTLS. Use it with
# $(eval ...). The ELF is added to M4_ELFS.
define m4_elf_obj
$(M4)/elf/$(1)/$(basename $(notdir $(2))).o: $(2) $(LIB_HDRS) $(M4_DIR)/measure.h $(M4_MBEDTLS_STAMP) $(M4_DIR)/mbedtls_config.h $(4)
	@mkdir -p $$(dir $$@)
	$$(ARM_CC) $$(M4_CFLAGS) $$(M4_INCLUDES) $(3) -c $$< -o $$@

endef
define m4_elf
$(foreach s,$(2),$(call m4_elf_obj,$(1),$(s),$(4),$(5)))
$(M4)/$(1).elf: $(foreach s,$(2),$(M4)/elf/$(1)/$(basename $(notdir $(s))).o) $(3) $(M4_STARTUP) $(M4_BOARD_LIB) $(M4_MBEDTLS_LIB) $(M4_LD)
	$$(ARM_CC) $$(M4_LDFLAGS) -Wl,-Map=$(M4)/$(1).map -o $$@ $$(filter %.o,$$^) \
		-Wl,--start-group $(3) $(M4_BOARD_LIB) $(M4_MBEDTLS_LIB) -Wl,--end-group
M4_ELFS += $(M4)/$(1).elf
endef

M4_ELFS :=
$(eval $(call m4_elf,selftest,$(M4_DIR)/selftest.c))
# The test programs of mcu/test: the conformance runner, and the update
# path on real inputs that hack/mcu-update-path writes as a header.
$(eval $(call m4_elf,vectors,$(MCU)/test/vectors.c $(MCU)/test/vectors_main.c $(MCU)/test/test_rng.c,$(M4_LIB)))
UPDATE_PATH_DATA := $(BUILD)/update_path/update_path_data.h
$(UPDATE_PATH_DATA): $(wildcard $(ROOT)/hack/mcu-update-path/*.go)
	cd $(ROOT) && go run ./hack/mcu-update-path -out $@
$(eval $(call m4_elf,update_path,$(MCU)/test/update_path.c,$(M4_LIB),-I$(dir $(UPDATE_PATH_DATA)),$(UPDATE_PATH_DATA)))

# Following the key set, on the device's build of the client
# (CLIENT_KEYS_DATA: test/client_keys.mk).
$(eval $(call m4_elf,test_client_keys,$(MCU)/test/test_client_keys.c $(MCU)/test/test_rng.c $(MCU)/test/test_platform.c,$(M4_LIB),-I$(dir $(CLIENT_KEYS_DATA)),$(CLIENT_KEYS_DATA)))

# The whole client, for its flash (docs/mcu.md).
$(eval $(call m4_elf,client_size,$(MCU)/test/client_size.c $(MCU)/test/test_platform.c,$(M4_LIB)))

# Ed25519 against Go's verdicts, on the device's build of it.
$(eval $(call m4_elf,test_ed25519,$(MCU)/test/test_ed25519.c,$(M4_LIB)))

cross: $(M4_MBEDTLS_LIB) $(M4_LIB) $(M4_ELFS)

M4_RUN := $(M4_DIR)/qemu-run.sh

# The self-test hashes its own ELF through semihosting; the expected digest
# comes from the host.
qemu-selftest: $(M4)/selftest.elf
	$(M4_RUN) $< $< $$(sha256sum $< | cut -d' ' -f1)

qemu: cross qemu-selftest
	$(M4_RUN) $(M4)/vectors.elf $(VECTORS)
	$(M4_RUN) $(M4)/update_path.elf
	$(M4_RUN) $(M4)/test_ed25519.elf $(MCU)/test/ed25519_cases.txt
	$(M4_RUN) $(M4)/test_client_keys.elf
	$(M4_RUN) $(M4)/client_size.elf

# The update path's footprint (M4_FOOTPRINT=client_size: the whole client's).
M4_FOOTPRINT ?= update_path
footprint: $(M4)/$(M4_FOOTPRINT).elf
	cd $(ROOT) && go run ./hack/mcu-footprint $(M4)/$(M4_FOOTPRINT).map
