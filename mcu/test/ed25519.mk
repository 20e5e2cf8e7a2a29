# Ed25519 verification against Go's verdicts: make -C mcu test-ed25519
# The cases and the base point table are generated (make -C mcu ed25519-gen,
# which needs Go).
.PHONY: test-ed25519 ed25519-gen
test: test-ed25519

$(HOST)/test_ed25519: $(MCU)/test/test_ed25519.c $(MCU)/test/test_rng.c $(HOST_LIB) $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(HOST_CFLAGS) $(INCLUDES) $(MCU)/test/test_ed25519.c $(MCU)/test/test_rng.c $(HOST_LIB) \
		-lmbedcrypto -o $@

test-ed25519: $(HOST)/test_ed25519
	$(HOST)/test_ed25519 $(MCU)/test/ed25519_cases.txt

ed25519-gen:
	cd $(ROOT) && go run ./hack/mcu-ed25519-table -o mcu/src/ed25519_tables.h
	cd $(ROOT) && go run ./hack/mcu-ed25519-cases -o mcu/test/ed25519_cases.txt
