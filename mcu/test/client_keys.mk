# The client following the server's key set, over a fake platform, with
# real key sets from the Go code: make -C mcu test-client-keys
# Its inputs are a header hack/mcu-client-keys writes (needs Go).
.PHONY: test-client-keys
test: test-client-keys

CLIENT_KEYS_DATA := $(BUILD)/client_keys/client_keys_data.h

$(CLIENT_KEYS_DATA): $(wildcard $(ROOT)/hack/mcu-client-keys/*.go)
	cd $(ROOT) && go run ./hack/mcu-client-keys -out $@

$(HOST)/test_client_keys: $(MCU)/test/test_client_keys.c $(MCU)/test/test_rng.c $(MCU)/test/test_platform.c \
		$(MCU)/test/test_platform.h $(CLIENT_KEYS_DATA) $(HOST_LIB) $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(HOST_CFLAGS) $(INCLUDES) -I$(dir $(CLIENT_KEYS_DATA)) $(MCU)/test/test_client_keys.c \
		$(MCU)/test/test_rng.c $(MCU)/test/test_platform.c $(HOST_LIB) -lmbedcrypto -o $@

test-client-keys: $(HOST)/test_client_keys
	$(HOST)/test_client_keys
