/* Shared by the client's files (client*.c); not a public API. */
#ifndef OTAFLOW_CLIENT_INTERNAL_H
#define OTAFLOW_CLIENT_INTERNAL_H

#include "ota_client.h"
#include "ota_envelope.h"

#define OTA_REC_TOKEN "token"
#define OTA_REC_FLOOR "floor"
#define OTA_REC_WORK "work"
#define OTA_REC_REPORT "report"
#define OTA_REC_KEYS "keys"

/* Request URLs (the server URL plus a path and query) are built in the
 * last OTA_CL_URL_MAX bytes of the body buffer; JSON bodies, sent and
 * received, use the rest (OTA_CL_JSON_CAP). */
#define OTA_CL_URL_MAX 1024
#define OTA_CL_URL(c) ((c)->cfg.body_buf + (c)->cfg.body_cap - OTA_CL_URL_MAX)
#define OTA_CL_JSON_CAP(c) ((c)->cfg.body_cap - OTA_CL_URL_MAX)

/* The chunk buffer's last bytes are scratch for serializing records and
 * for a refusal's reason: whenever those run, the buffer holds no chunk
 * (before or after a download, or between two chunks: the sink has
 * consumed the chunk's plaintext), and a check's payload stays below. */
#define OTA_CL_REC_MAX 1024
#define OTA_CL_RESERVED (OTA_CL_REC_MAX + OTA_REASON_MAX + 1)
#define OTA_CL_RECORD(c) ((c)->cfg.chunk_buf + (c)->cfg.chunk_cap - OTA_CL_RESERVED)
#define OTA_CL_REASON(c) ((char *)(c)->cfg.chunk_buf + (c)->cfg.chunk_cap - (OTA_REASON_MAX + 1))

enum { OTA_WORK_DOWNLOADING = 1, OTA_WORK_INSTALLED = 2 };

/* The update in progress, as the "work" record keeps it. */
typedef struct {
	uint8_t phase, rollback, has_header;
	uint8_t header[OTA_ENV_HEADER_SIZE];
	uint64_t chunks; /* verified and durably written */
	uint64_t security_version, plain_size, enc_size;
	uint8_t enc_sha256[32], plain_sha256[32];
	char etag[OTA_ETAG_MAX + 1];
	char rollout[OTA_ROLLOUT_MAX + 1];
	char version[OTA_VERSION_MAX + 1];
} ota_cl_work;

typedef struct {
	char b[256];
	int bad;
} ota_cl_line;

typedef struct {
	uint8_t *p;
	size_t cap, n;
	int err;
} ota_cl_rec;

size_t ota_cl_u64(uint64_t v, char out[21]);
void ota_cl_cat(char *out, size_t cap, const char *s, int *bad);
void ota_cl_cat_u64(char *out, size_t cap, uint64_t v, int *bad);
int ota_cl_copy(char *out, size_t cap, const char *s);
void *ota_cl_align8(void *p);

void ota_cl_line_begin(ota_cl_line *l, const char *event);
void ota_cl_line_str(ota_cl_line *l, const char *k, const char *v);
void ota_cl_line_u64(ota_cl_line *l, const char *k, uint64_t v);
void ota_cl_line_int(ota_cl_line *l, const char *k, int v);
void ota_cl_emit(ota_client *c, int level, ota_cl_line *l);

void ota_cl_w_u8(ota_cl_rec *r, uint8_t v);
void ota_cl_w_u64(ota_cl_rec *r, uint64_t v);
void ota_cl_w_bytes(ota_cl_rec *r, const void *p, size_t n);
void ota_cl_w_str(ota_cl_rec *r, const char *s);
void ota_cl_r_bytes(ota_cl_rec *r, void *p, size_t n);
uint8_t ota_cl_r_u8(ota_cl_rec *r);
uint64_t ota_cl_r_u64(ota_cl_rec *r);
void ota_cl_r_str(ota_cl_rec *r, char *s, size_t cap);

int ota_cl_work_load(ota_client *c, ota_cl_work *w, int *have);
int ota_cl_work_save(ota_client *c, const ota_cl_work *w);
int ota_cl_work_drop(ota_client *c, int abort);

int ota_cl_url(ota_client *c, char *out, size_t cap, const char *path);

/* ota_cl_build_fn puts a request body into body_buf. It runs again for a
 * retry, since the answer overwrote the buffer. */
typedef int (*ota_cl_build_fn)(ota_client *c, void *arg, const uint8_t **body, size_t *len);
/* ota_cl_url_fn writes a request's URL (into the body buffer's tail, which
 * an enrollment within the call overwrites: so it runs for every attempt). */
typedef int (*ota_cl_url_fn)(ota_client *c, const char *arg, char *out, size_t cap);
int ota_cl_path_url(ota_client *c, const char *path, char *out, size_t cap);
int ota_cl_call(ota_client *c, const char *method, ota_cl_url_fn mkurl, const char *url_arg, ota_cl_build_fn build,
                void *arg, int auth, size_t *len);
void ota_cl_log_event(ota_client *c, int level, const char *event, const char *k, const char *v);
void ota_cl_log_answer(ota_client *c, int level, const char *event, size_t len);

/* Assignment keys (client_keys.c). */
int ota_cl_keys_load(ota_client *c);
int ota_cl_keys_due(const ota_client *c);
int ota_cl_trusts(const ota_client *c, const uint8_t id[32]);
/* ota_cl_keys_detail explains an assignment signed by key_id (hex) that
 * the device does not trust, after following the key set gave sync_err. */
void ota_cl_keys_detail(const ota_client *c, const char *key_id, int sync_err, char *out, size_t cap);
void ota_cl_resp_init(ota_http_response *resp, char *location, size_t cap);
void ota_cl_saw(ota_client *c, const ota_http_response *resp);
int ota_cl_report(ota_client *c, const char *rollout, int state, int progress, const char *reason);
int ota_cl_refuse(ota_client *c, const char *rollout, int err, const char *detail);
void ota_cl_token_refused(ota_client *c, const char *url);

#endif
