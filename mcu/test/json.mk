# The JSON reader/writer tests: make -C mcu test-json
.PHONY: test-json
test: test-json

$(HOST)/test_json: $(MCU)/test/test_json.c $(MCU)/src/json.c $(MCU)/include/otaflow/ota_json.h $(MCU)/include/otaflow/ota.h
	@mkdir -p $(dir $@)
	$(HOST_CC) $(HOST_CFLAGS) $(INCLUDES) $(MCU)/test/test_json.c $(MCU)/src/json.c -o $@

test-json: $(HOST)/test_json
	$(HOST)/test_json
