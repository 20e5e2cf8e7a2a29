/*
 * The update path of one device, as a program: verify the server's signed
 * install answer, unwrap the content key, decrypt and verify a 40000-byte
 * image in 16 KiB chunks fed in network-sized pieces, check its digest and
 * the vendor's ECDSA signature; then the same download with one flipped
 * byte must be refused at its chunk. Inputs come from
 * hack/mcu-update-path (update_path_data.h). Built for the Cortex-M4, it
 * reports the peak stack and mbedTLS heap: the RAM figures of docs/mcu.md.
 */
#include <stdio.h>
#include <string.h>

#include "ota_assignment.h"
#include "ota_envelope.h"
#include "ota_hpke.h"
#include "ota_vendorsig.h"
#include "update_path_data.h"

#include "measure.h"

#define SEGMENT 1460 /* what one TCP segment delivers */

/* The update path's state: everything a device keeps while it updates. */
static struct {
	ota_update_answer answer;
	uint8_t payload[2048];
	ota_assignment a;
	ota_device_key dev;
	ota_pubkey server, vendor;
	uint8_t key[32];
	ota_env_dec dec;
	ota_vendor_stream vs;
	uint8_t chunk[ota_env_buf_size(OTA_ENV_DEFAULT_LOG2)];
	uint8_t segment[SEGMENT];
} st;

static int sink(void *arg, uint64_t index, const uint8_t *p, size_t n)
{
	(void)arg;
	(void)index;
	ota_vendor_update(&st.vs, p, n);
	return 0;
}

/* update runs the whole path; flip >= 0 flips that blob byte in transit. */
static int update(long flip)
{
	ota_trust trust;
	ota_device_state ds;
	uint64_t floor;
	size_t pos;
	int r;
	memset(&ds, 0, sizeof ds);
	ds.device_id = UP_DEVICE_ID;
	ds.kem = OTA_KEM_X25519;
	ds.nonce = UP_NONCE;
	ds.running_version = UP_RUNNING_VERSION;
	ds.security_floor = UP_FLOOR;
	ds.now = UP_NOW;
	ds.skew = 300;
	trust.keys = &st.server;
	trust.n = 1;
	if ((r = ota_answer_parse(up_answer, sizeof up_answer - 1, &st.answer, st.payload, sizeof st.payload)) ||
	    (r = ota_answer_check(&trust, &st.answer, &ds, &st.a, &floor)))
		return r;
	if ((r = ota_unwrap_key(&st.dev, st.a.enc_sha256, UP_DEVICE_ID, st.a.wrapped_key, st.a.wrapped_len, st.key)))
		return r;
	if (sizeof up_blob != st.a.enc_size)
		return OTA_ERR_BLOB;
	r = ota_env_init(&st.dec, up_blob, st.key, st.a.enc_size, 0, st.chunk, sizeof st.chunk);
	memset(st.key, 0, sizeof st.key);
	if (r)
		return r;
	if ((r = ota_vendor_begin(&st.vs, &st.vendor, st.a.vendor_sig, st.a.vendor_sig_len)))
		goto out;
	for (pos = OTA_ENV_HEADER_SIZE; pos < sizeof up_blob;) {
		size_t n = sizeof up_blob - pos < SEGMENT ? sizeof up_blob - pos : SEGMENT;
		memcpy(st.segment, up_blob + pos, n);
		if (flip >= (long)pos && flip < (long)(pos + n))
			st.segment[flip - (long)pos] ^= 0x01;
		if ((r = ota_env_feed(&st.dec, st.segment, n, sink, NULL)))
			goto out;
		pos += n;
	}
	if ((r = ota_env_finish(&st.dec)))
		goto out;
	r = ota_vendor_end(&st.vs, st.a.plain_size, st.a.plain_sha256);
out:
	ota_env_free(&st.dec);
	return r;
}

int main(void)
{
	int r, bad;
	ota_heap_init(); /* key derivation allocates too */
	ota_stack_paint();
	if (ota_device_key_from_priv(&st.dev, OTA_KEM_X25519, up_device_priv) ||
	    ota_pubkey_from_raw(&st.server, OTA_ALG_ED25519, up_server_pub, sizeof up_server_pub) ||
	    ota_pubkey_from_raw(&st.vendor, OTA_ALG_P256, up_vendor_pub, sizeof up_vendor_pub)) {
		printf("keys do not load\nRESULT: FAIL\n");
		return 1;
	}
	r = update(-1);
	/* A byte of chunk 1's ciphertext flipped: refused at that chunk. */
	bad = update(OTA_ENV_HEADER_SIZE + ota_env_buf_size(OTA_ENV_DEFAULT_LOG2) + 100);
	printf("update: %s; tampered chunk: %s\n", ota_err_code(r), ota_err_code(bad));
	printf("update path: stack peak %u bytes, mbedTLS heap peak %u bytes, state %u bytes (of which network segment %u)\n",
	       (unsigned)ota_stack_peak(), (unsigned)ota_heap_peak(), (unsigned)sizeof st, (unsigned)SEGMENT);
	printf("state: answer %u, payload %u, assignment %u, device key %u, keys %u, decoder %u, vendor stream %u, "
	       "chunk buffer %u, segment %u\n",
	       (unsigned)sizeof st.answer, (unsigned)sizeof st.payload, (unsigned)sizeof st.a, (unsigned)sizeof st.dev,
	       (unsigned)(sizeof st.server + sizeof st.vendor + sizeof st.key), (unsigned)sizeof st.dec,
	       (unsigned)sizeof st.vs, (unsigned)sizeof st.chunk, (unsigned)sizeof st.segment);
	r = r == OTA_OK && bad == OTA_ERR_AUTH;
	printf("RESULT: %s\n", r ? "PASS" : "FAIL");
	return r ? 0 : 1;
}
