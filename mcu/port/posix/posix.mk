# The POSIX client: build/host/otaflow-mcu-client (make -C mcu posix).
POSIX_DIR  := $(MCU)/port/posix
POSIX_SRCS := $(POSIX_DIR)/main.c $(POSIX_DIR)/platform_posix.c $(POSIX_DIR)/http_posix.c
POSIX_HDRS := $(POSIX_DIR)/ota_posix.h
POSIX_BIN  := $(HOST)/otaflow-mcu-client

.PHONY: posix
posix: $(POSIX_BIN)

$(POSIX_BIN): $(POSIX_SRCS) $(POSIX_HDRS) $(LIB_HDRS) $(HOST_LIB)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(HOST_CFLAGS) $(INCLUDES) -I$(POSIX_DIR) $(POSIX_SRCS) $(HOST_LIB) \
		-lmbedtls -lmbedx509 -lmbedcrypto -o $@
