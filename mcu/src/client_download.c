/*
 * ota_client_update: download, verify and install one assignment's blob.
 *
 * Chunks are verified as they arrive (the known-size decoder of
 * ota_envelope.h), written to the installer and counted in the "work"
 * record, so a download cut anywhere resumes at the chunk after the last
 * verified one: GET with Range: bytes=<58 + k·(C+16)>- and If-Range.
 */
#include <string.h>

#include "client_internal.h"
#include "ota_vendorsig.h"

#define MAX_REDIRECTS 5

typedef struct {
	ota_client *c;
	const ota_assignment *a;
	ota_cl_work *w;
	ota_env_dec dec;
	ota_vendor_stream vs;
	uint8_t key[32];
	uint64_t offset; /* where the current request starts in the blob */
	size_t hdr_fill;
	int started, dec_ready;
	int refusal; /* set when the transfer stopped for a refusal */
	char detail[128];
} ota_dl;

static int stop(ota_dl *d, int err, const char *what, uint64_t n, const char *more)
{
	int bad = 0;
	d->refusal = err;
	d->detail[0] = 0;
	ota_cl_cat(d->detail, sizeof d->detail, what, &bad);
	if (more) {
		ota_cl_cat_u64(d->detail, sizeof d->detail, n, &bad);
		ota_cl_cat(d->detail, sizeof d->detail, more, &bad);
	}
	return err;
}

/* plain_sink takes a verified chunk: installer, hashes, then the count. */
static int plain_sink(void *arg, uint64_t index, const uint8_t *plain, size_t n)
{
	ota_dl *d = arg;
	ota_client *c = d->c;
	uint64_t off = index << d->dec.chunk_log2;
	if (n && c->plat->install_write(c->plat->ctx, off, plain, n) != OTA_OK)
		return stop(d, OTA_ERR_INSTALL, "writing the image failed at byte ", off, "");
	ota_vendor_update(&d->vs, plain, n);
	d->w->chunks = index + 1;
	/* The bytes are durable (install_write); now the count is. */
	return ota_cl_work_save(c, d->w);
}

/* header_ready checks the blob's header against the assignment and the
 * unwrapped key, and starts the decoder at chunk 0. */
static int header_ready(ota_dl *d)
{
	ota_cl_work *w = d->w;
	ota_client *c = d->c;
	unsigned log2 = 0;
	uint64_t n = 0, p = 0;
	int e = ota_env_parse_header(w->header, &log2);
	if (e != OTA_OK)
		return stop(d, OTA_ERR_BLOB, "blob header refused", 0, NULL);
	if (ota_env_buf_size(log2) > c->cfg.chunk_cap)
		return stop(d, OTA_ERR_BLOB, "blob chunks are larger than this device's buffer: 2^", log2, " bytes");
	if (ota_env_plain_size(log2, w->enc_size, &n, &p) != OTA_OK || p != w->plain_size)
		return stop(d, OTA_ERR_BLOB, "blob header's chunk size does not fit the assigned sizes", 0, NULL);
	e = ota_env_init(&d->dec, w->header, d->key, w->enc_size, 0, c->cfg.chunk_buf, c->cfg.chunk_cap);
	if (e == OTA_ERR_WRONG_KEY)
		return stop(d, OTA_ERR_BLOB, "blob key commitment does not match the unwrapped key (tampered header or wrong blob)",
		            0, NULL);
	if (e != OTA_OK)
		return stop(d, OTA_ERR_BLOB, "blob refused", 0, NULL);
	d->dec_ready = 1;
	w->has_header = 1;
	return ota_cl_work_save(c, w);
}

/* begin checks the answer's status, size and range before its first byte. */
static int begin(ota_dl *d, const ota_http_response *r)
{
	ota_cl_work *w = d->w;
	uint64_t want = w->enc_size - d->offset;
	if (r->etag[0])
		(void)ota_cl_copy(w->etag, sizeof w->etag, r->etag);
	if (d->offset > 0 && r->status == 200) {
		/* If-Range did not match: the server sent the whole blob. Start
		 * over from the header at the next attempt. */
		w->chunks = 0;
		w->has_header = 0;
		d->c->plat->install_abort(d->c->plat->ctx);
		(void)ota_cl_work_save(d->c, w);
		return OTA_ERR_IO;
	}
	if (r->status == 206) {
		if (r->range_first < 0 || (uint64_t)r->range_first != d->offset)
			return OTA_ERR_HTTP; /* not the range asked for: retry later */
		if (r->range_total >= 0 && (uint64_t)r->range_total != w->enc_size)
			return stop(d, OTA_ERR_BLOB, "blob is ", (uint64_t)r->range_total,
			            " bytes (Content-Range), not the assigned size");
	}
	if (r->content_length >= 0 && (uint64_t)r->content_length != want)
		return stop(d, OTA_ERR_BLOB, "blob answer carries ", (uint64_t)r->content_length,
		            " bytes (Content-Length), not the assigned size");
	return OTA_OK;
}

static int blob_sink(void *arg, const ota_http_response *r, const uint8_t *p, size_t n)
{
	ota_dl *d = arg;
	int e;
	if (r->status != 200 && r->status != 206)
		return 0; /* an error or redirect body: not needed */
	if (!d->started) {
		d->started = 1;
		if ((e = begin(d, r)) != OTA_OK)
			return e;
	}
	if (!d->w->has_header) {
		size_t take = OTA_ENV_HEADER_SIZE - d->hdr_fill;
		if (take > n)
			take = n;
		memcpy(d->w->header + d->hdr_fill, p, take);
		d->hdr_fill += take;
		p += take, n -= take;
		if (d->hdr_fill < OTA_ENV_HEADER_SIZE)
			return 0;
		if ((e = header_ready(d)) != OTA_OK)
			return e;
	}
	if (n == 0)
		return 0;
	e = ota_env_feed(&d->dec, p, n, plain_sink, d);
	switch (e) {
	case OTA_OK:
		return 0;
	case OTA_ERR_AUTH:
	case OTA_ERR_TRAILING:
		return stop(d, OTA_ERR_CHUNK_AUTH, "chunk ", d->dec.next,
		            " failed authentication: the download was tampered with or corrupted");
	case OTA_ERR_FORMAT:
		return stop(d, OTA_ERR_BLOB, "blob refused at chunk ", d->dec.next, ": not canonical");
	default:
		return e; /* the sink's: a refusal already set, or storage */
	}
}

/* origin_len: the length of url's "scheme://host[:port]"; 0 without a
 * scheme. */
static size_t origin_len(const char *url)
{
	const char *p = strstr(url, "://");
	return p ? (size_t)(p - url) + 3 + strcspn(p + 3, "/?#") : 0;
}

static int same_origin(const char *a, const char *b)
{
	size_t na = origin_len(a), nb = origin_len(b), i;
	if (!na || na != nb)
		return 0;
	for (i = 0; i < na; i++) {
		char x = a[i], y = b[i];
		if (x >= 'A' && x <= 'Z')
			x = (char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (char)(y - 'A' + 'a');
		if (x != y)
			return 0;
	}
	return 1;
}

/* fetch requests the blob from the first chunk not yet verified and feeds
 * it to the decoder. Redirects are followed without the bearer token; the
 * body buffer's two halves hold the URL and the next Location. */
static int fetch(ota_dl *d)
{
	ota_client *c = d->c;
	ota_cl_work *w = d->w;
	size_t half = c->cfg.body_cap / 2;
	char *url = c->cfg.body_buf, *loc = c->cfg.body_buf + half, *t;
	char range[32], if_range[OTA_ETAG_MAX + 1];
	int hop, reauth = 0, e, bad = 0;
	ota_http_request req;
	ota_http_response resp;
	ota_cl_line l;
	d->offset = 0;
	d->hdr_fill = 0;
	d->started = 0;
	if (w->has_header) {
		e = ota_env_init(&d->dec, w->header, d->key, w->enc_size, w->chunks, c->cfg.chunk_buf, c->cfg.chunk_cap);
		if (e == OTA_ERR_WRONG_KEY)
			return stop(d, OTA_ERR_BLOB, "blob key commitment does not match the unwrapped key", 0, NULL);
		if (e != OTA_OK)
			return stop(d, OTA_ERR_BLOB, "stored blob header refused", 0, NULL);
		d->dec_ready = 1;
		d->offset = ota_env_chunk_offset(&d->dec, w->chunks);
	}
	if (ota_cl_copy(url, half, d->a->blob_url) != OTA_OK)
		return stop(d, OTA_ERR_BLOB, "blobURL too long for this device", 0, NULL);
	memset(&req, 0, sizeof req);
	req.method = "GET";
	if (d->offset > 0) {
		range[0] = 0;
		ota_cl_cat(range, sizeof range, "bytes=", &bad);
		ota_cl_cat_u64(range, sizeof range, d->offset, &bad);
		ota_cl_cat(range, sizeof range, "-", &bad);
		req.range = range;
		if (w->etag[0]) {
			(void)ota_cl_copy(if_range, sizeof if_range, w->etag);
		} else {
			if_range[0] = '"';
			ota_hex_encode(w->enc_sha256, 32, if_range + 1);
			if_range[65] = '"', if_range[66] = 0;
		}
		req.if_range = if_range;
	}
	ota_cl_line_begin(&l, "download");
	ota_cl_line_u64(&l, "offset", d->offset);
	ota_cl_line_u64(&l, "chunk", w->chunks);
	ota_cl_line_u64(&l, "size", w->enc_size);
	if (req.range)
		ota_cl_line_str(&l, "range", req.range);
	ota_cl_emit(c, OTA_LOG_INFO, &l);
	/* The token goes only to the OTA server's own origin. */
	req.authorization = same_origin(url, c->cfg.server_url) ? c->auth : NULL;
	for (hop = 0; hop <= MAX_REDIRECTS; hop++) {
		if (req.authorization && !c->auth[0]) {
			if ((e = ota_client_enroll(c)) != OTA_OK)
				return e;
			if (ota_cl_copy(url, half, d->a->blob_url) != OTA_OK)
				return OTA_ERR_BUFFER;
		}
		req.url = url;
		ota_cl_resp_init(&resp, loc, half);
		c->http_status = 0;
		c->retry_after = 0;
		e = c->plat->http(c->plat->ctx, &req, &resp, blob_sink, d);
		ota_cl_saw(c, &resp);
		if (e != OTA_OK) {
			if (d->refusal)
				return d->refusal;
			ota_cl_line_begin(&l, "download-interrupted");
			ota_cl_line_u64(&l, "chunks", w->chunks);
			ota_cl_line_str(&l, "err", ota_err_code(e));
			ota_cl_emit(c, OTA_LOG_WARN, &l);
			return e;
		}
		if ((resp.status == 301 || resp.status == 302 || resp.status == 303 || resp.status == 307 ||
		     resp.status == 308) &&
		    loc[0]) {
			if (loc[0] == '/') { /* relative to the current origin */
				size_t o = origin_len(url);
				if (o + strlen(loc) + 1 > half)
					return OTA_ERR_BUFFER;
				memmove(loc + o, loc, strlen(loc) + 1);
				memcpy(loc, url, o);
			}
			t = url, url = loc, loc = t;
			req.authorization = NULL; /* never to another origin, nor a presigned URL */
			ota_cl_line_begin(&l, "redirect");
			ota_cl_line_int(&l, "status", resp.status);
			ota_cl_emit(c, OTA_LOG_INFO, &l);
			continue;
		}
		if (resp.status == 401 && req.authorization && !reauth) {
			reauth = 1;
			ota_cl_token_refused(c, url);
			continue;
		}
		if (resp.status != 200 && resp.status != 206) {
			ota_cl_line_begin(&l, "download-failed");
			ota_cl_line_int(&l, "status", resp.status);
			ota_cl_emit(c, OTA_LOG_WARN, &l);
			return OTA_ERR_HTTP;
		}
		if (!d->dec_ready)
			return OTA_ERR_IO; /* the answer ended inside the header */
		e = ota_env_finish(&d->dec);
		if (e == OTA_ERR_TRUNCATED)
			return OTA_ERR_IO; /* ended early without saying so */
		if (e == OTA_ERR_AUTH || e == OTA_ERR_TRAILING)
			return stop(d, OTA_ERR_CHUNK_AUTH, "chunk ", d->dec.next, " failed authentication");
		if (e != OTA_OK)
			return stop(d, OTA_ERR_BLOB, "blob refused", 0, NULL);
		return OTA_OK;
	}
	return stop(d, OTA_ERR_BLOB, "too many redirects for the blob", 0, NULL);
}

/* rehash feeds what earlier attempts wrote back through the hashes. */
static int rehash(ota_dl *d, uint64_t bytes)
{
	ota_client *c = d->c;
	uint64_t off = 0;
	while (off < bytes) {
		size_t n = c->cfg.chunk_cap;
		if (n > bytes - off)
			n = (size_t)(bytes - off);
		if (c->plat->install_read(c->plat->ctx, off, c->cfg.chunk_buf, n) != OTA_OK)
			return OTA_ERR_INSTALL;
		ota_vendor_update(&d->vs, c->cfg.chunk_buf, n);
		off += n;
	}
	return OTA_OK;
}

static int vendor_begin(ota_dl *d)
{
	ota_client *c = d->c;
	const ota_assignment *a = d->a;
	const ota_pubkey *key = c->cfg.vendor_key;
	if (a->vendor_sig_len == 0 && !a->vendor_sig_too_long) {
		if (c->cfg.require_vendor_signature)
			return stop(d, OTA_ERR_VENDOR_SIG,
			            "vendor signature not verified: the assignment carries no vendor signature and unsigned "
			            "images are not allowed",
			            0, NULL);
		key = NULL;
	} else if (a->vendor_sig_too_long) {
		if (key)
			return stop(d, OTA_ERR_VENDOR_SIG, "vendor signature not verified: longer than any signature of the vendor key",
			            0, NULL);
	}
	if (ota_vendor_begin(&d->vs, key, a->vendor_sig, a->vendor_sig_len) != OTA_OK)
		return stop(d, OTA_ERR_VENDOR_SIG, "vendor signature not verified: wrong length for the vendor key", 0, NULL);
	return OTA_OK;
}

/* same_update: the stored work is this assignment's. */
static int same_update(const ota_cl_work *w, const ota_assignment *a)
{
	return strcmp(w->rollout, a->rollout) == 0 && memcmp(w->enc_sha256, a->enc_sha256, 32) == 0 &&
	       memcmp(w->plain_sha256, a->plain_sha256, 32) == 0 && w->enc_size == a->enc_size &&
	       w->plain_size == a->plain_size && strcmp(w->version, a->version) == 0;
}

static int new_work(ota_client *c, ota_cl_work *w, const ota_assignment *a)
{
	memset(w, 0, sizeof *w);
	w->phase = OTA_WORK_DOWNLOADING;
	w->rollback = a->rollback;
	w->security_version = a->security_version;
	w->plain_size = a->plain_size;
	w->enc_size = a->enc_size;
	memcpy(w->enc_sha256, a->enc_sha256, 32);
	memcpy(w->plain_sha256, a->plain_sha256, 32);
	if (ota_cl_copy(w->rollout, sizeof w->rollout, a->rollout) != OTA_OK ||
	    ota_cl_copy(w->version, sizeof w->version, a->version) != OTA_OK)
		return OTA_ERR_ARG;
	return ota_cl_work_save(c, w);
}

/* fail discards the download and reports the refusal. */
static int fail(ota_dl *d, int err)
{
	ota_client *c = d->c;
	if (ota_cl_work_drop(c, 1) != OTA_OK)
		return OTA_ERR_STORAGE;
	return ota_cl_refuse(c, d->a->rollout, err, d->detail);
}

/* refuse: a refusal found outside the transfer, discarded and reported. */
static int refuse(ota_dl *d, int err, const char *what)
{
	return fail(d, stop(d, err, what, 0, NULL));
}

/* report sends a progress state; only a cancel or storage failure stops
 * the update (an undelivered report waits in the record). */
static int report(ota_client *c, const char *rollout, int state, int progress)
{
	int e = ota_cl_report(c, rollout, state, progress, NULL);
	return e == OTA_ERR_CANCELED || e == OTA_ERR_STORAGE ? e : OTA_OK;
}

static int run(ota_dl *d)
{
	ota_client *c = d->c;
	const ota_assignment *a = d->a;
	ota_cl_work *w = d->w;
	int have, e;
	uint64_t n_chunks = 0, plain = 0, done;
	unsigned log2 = 0;
	ota_cl_line l;
	if ((e = ota_cl_work_load(c, w, &have)) != OTA_OK)
		return e;
	if (have && !same_update(w, a)) {
		ota_cl_line_begin(&l, "download-replaced");
		ota_cl_line_str(&l, "old", w->rollout);
		ota_cl_line_str(&l, "new", a->rollout);
		ota_cl_emit(c, OTA_LOG_INFO, &l);
		if ((e = ota_cl_work_drop(c, w->phase != OTA_WORK_INSTALLED)) != OTA_OK)
			return e;
		have = 0;
	}
	if (have && w->phase == OTA_WORK_INSTALLED) {
		c->installed = 1; /* written already: boot it */
		if (c->plat->reboot)
			c->plat->reboot(c->plat->ctx);
		return OTA_OK;
	}
	if (!have) {
		if ((e = new_work(c, w, a)) != OTA_OK)
			return e;
		if ((e = report(c, a->rollout, OTA_STATE_DOWNLOADING, 0)) != OTA_OK)
			return e;
	}
	if (ota_unwrap_key(c->cfg.device_key, a->enc_sha256, c->cfg.device_id, a->wrapped_key, a->wrapped_len, d->key) !=
	    OTA_OK) {
		return refuse(d, OTA_ERR_UNWRAP, "content key does not unwrap with this device's key");
	}
	if ((e = vendor_begin(d)) != OTA_OK)
		return fail(d, e);
	if (w->has_header && ota_env_parse_header(w->header, &log2) == OTA_OK &&
	    ota_env_plain_size(log2, w->enc_size, &n_chunks, &plain) == OTA_OK && plain == w->plain_size &&
	    w->chunks <= n_chunks) {
		done = w->chunks << log2;
		if (done > plain)
			done = plain;
	} else {
		w->has_header = 0, w->chunks = 0, done = 0;
	}
	if (c->plat->install_open(c->plat->ctx, w->plain_size, done > 0 || w->chunks > 0) != OTA_OK) {
		return refuse(d, OTA_ERR_INSTALL, "the installer cannot open its staging slot");
	}
	if (done > 0 && rehash(d, done) != OTA_OK) {
		/* What was written cannot be read back: download it again. */
		w->has_header = 0, w->chunks = 0;
		if ((e = ota_vendor_begin(&d->vs, d->vs.key, a->vendor_sig, a->vendor_sig_len)) != OTA_OK)
			return e;
		c->plat->install_abort(c->plat->ctx);
		if (c->plat->install_open(c->plat->ctx, w->plain_size, 0) != OTA_OK)
			return OTA_ERR_INSTALL;
	}
	if (!w->has_header || w->chunks < n_chunks) {
		e = fetch(d);
		ota_env_free(&d->dec);
		if (d->refusal)
			return fail(d, d->refusal);
		if (e != OTA_OK)
			return e;
	}
	e = ota_vendor_end(&d->vs, w->plain_size, w->plain_sha256);
	if (e == OTA_ERR_PLAIN_DIGEST) {
		return refuse(d, e, "image size or SHA-256 differs from the assignment's");
	}
	if (e != OTA_OK) {
		return refuse(d, OTA_ERR_VENDOR_SIG, "vendor signature not verified: it does not verify with the vendor key");
	}
	ota_cl_line_begin(&l, "downloaded");
	ota_cl_line_str(&l, "rollout", a->rollout);
	ota_cl_line_str(&l, "version", a->version);
	ota_cl_line_u64(&l, "bytes", w->plain_size);
	ota_cl_emit(c, OTA_LOG_INFO, &l);
	if ((e = report(c, a->rollout, OTA_STATE_DOWNLOADED, -1)) != OTA_OK ||
	    (e = report(c, a->rollout, OTA_STATE_INSTALLING, -1)) != OTA_OK)
		return e;
	if (a->security_version < c->floor) {
		return refuse(d, OTA_ERR_BELOW_FLOOR, "install refused: securityVersion below the device's security floor");
	}
	if (c->plat->install_finish(c->plat->ctx, a->version) != OTA_OK) {
		return refuse(d, OTA_ERR_INSTALL, "the installer could not finish the image");
	}
	w->phase = OTA_WORK_INSTALLED;
	if ((e = ota_cl_work_save(c, w)) != OTA_OK)
		return e;
	c->installed = 1;
	ota_cl_line_begin(&l, "installed");
	ota_cl_line_str(&l, "rollout", a->rollout);
	ota_cl_line_str(&l, "version", a->version);
	ota_cl_emit(c, OTA_LOG_INFO, &l);
	(void)report(c, a->rollout, OTA_STATE_INSTALLED, -1); /* a cancel comes too late now */
	ota_cl_line_begin(&l, "reboot");
	ota_cl_line_str(&l, "version", a->version);
	ota_cl_emit(c, OTA_LOG_INFO, &l);
	if (c->plat->reboot)
		c->plat->reboot(c->plat->ctx);
	return OTA_OK;
}

int ota_client_update(ota_client *c, const ota_assignment *a)
{
	ota_cl_work w;
	ota_dl d;
	int e;
	if (!c || !a)
		return OTA_ERR_ARG;
	memset(&d, 0, sizeof d);
	d.c = c, d.a = a, d.w = &w;
	e = run(&d);
	memset(d.key, 0, sizeof d.key);
	return e;
}
