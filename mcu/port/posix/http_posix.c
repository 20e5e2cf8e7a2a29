/*
 * HTTP/1.1 client of the POSIX port: one request per connection
 * (Connection: close), non-blocking sockets with poll() timeouts, chunked
 * transfer coding, TLS through mbedTLS for https:// URLs.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>

#include "ota_posix.h"

typedef struct {
	char host[256];
	char port[8];
	const char *path; /* into the URL; "" means "/" */
	int tls;
} url_parts;

typedef struct {
	ota_posix *px;
	int fd;
	int tls;
	mbedtls_ssl_context ssl;
	/* buffered reader */
	size_t pos, end;
	int eof;
} conn;

static int parse_url(const char *url, url_parts *u)
{
	const char *h, *e, *p;
	size_t n;
	memset(u, 0, sizeof *u);
	if (strncmp(url, "http://", 7) == 0) {
		h = url + 7;
		strcpy(u->port, "80");
	} else if (strncmp(url, "https://", 8) == 0) {
		h = url + 8;
		u->tls = 1;
		strcpy(u->port, "443");
	} else {
		return -1;
	}
	e = h + strcspn(h, "/?#");
	u->path = e;
	if (*h == '[') { /* IPv6 literal */
		const char *r = memchr(h, ']', (size_t)(e - h));
		if (!r)
			return -1;
		n = (size_t)(r - h - 1);
		if (n == 0 || n >= sizeof u->host)
			return -1;
		memcpy(u->host, h + 1, n);
		p = r + 1;
	} else {
		p = memchr(h, ':', (size_t)(e - h));
		if (!p)
			p = e;
		n = (size_t)(p - h);
		if (n == 0 || n >= sizeof u->host)
			return -1;
		memcpy(u->host, h, n);
	}
	if (p < e && *p == ':') {
		n = (size_t)(e - p - 1);
		if (n == 0 || n >= sizeof u->port || strspn(p + 1, "0123456789") < n)
			return -1;
		memcpy(u->port, p + 1, n);
		u->port[n] = 0;
	}
	return 0;
}

static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd pf;
	int r;
	pf.fd = fd, pf.events = events, pf.revents = 0;
	do {
		r = poll(&pf, 1, timeout_ms);
	} while (r < 0 && errno == EINTR);
	return r > 0 ? 0 : -1;
}

static int dial(ota_posix *px, const char *host, const char *port)
{
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	for (ai = res; ai; ai = ai->ai_next) {
		int err = 0;
		socklen_t len = sizeof err;
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
			continue;
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS && wait_fd(fd, POLLOUT, px->connect_timeout_ms) == 0 &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* Raw socket I/O for mbedTLS: non-blocking, the waiting is done above. */
static int bio_send(void *ctx, const unsigned char *p, size_t n)
{
	conn *c = ctx;
	ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
	if (r >= 0)
		return (int)r;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *p, size_t n)
{
	conn *c = ctx;
	ssize_t r = recv(c->fd, p, n, 0);
	if (r >= 0)
		return (int)r;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return MBEDTLS_ERR_SSL_WANT_READ;
	return MBEDTLS_ERR_NET_RECV_FAILED;
}

static int tls_setup(ota_posix *px)
{
	static const char pers[] = "otaflow-mcu-client";
	if (px->tls_ready)
		return 0;
	mbedtls_entropy_init(&px->entropy);
	mbedtls_ctr_drbg_init(&px->drbg);
	mbedtls_x509_crt_init(&px->ca);
	mbedtls_ssl_config_init(&px->tls);
	px->tls_ready = 1;
	if (mbedtls_ctr_drbg_seed(&px->drbg, mbedtls_entropy_func, &px->entropy, (const unsigned char *)pers,
	                          sizeof pers - 1) != 0)
		return -1;
	if (!px->ca_file || mbedtls_x509_crt_parse_file(&px->ca, px->ca_file) < 0)
		return -1;
	if (mbedtls_ssl_config_defaults(&px->tls, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
	                                MBEDTLS_SSL_PRESET_DEFAULT) != 0)
		return -1;
	mbedtls_ssl_conf_authmode(&px->tls, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&px->tls, &px->ca, NULL);
	mbedtls_ssl_conf_rng(&px->tls, mbedtls_ctr_drbg_random, &px->drbg);
	mbedtls_ssl_conf_min_version(&px->tls, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
	return 0;
}

static void log_tls(ota_posix *px, const char *what, int err)
{
	char msg[160], line[240];
	mbedtls_strerror(err, msg, sizeof msg);
	snprintf(line, sizeof line, "event=tls-error step=%s err=\"%s\"", what, msg);
	ota_posix_log(px, OTA_LOG_WARN, line);
}

static int tls_start(conn *c, const char *host)
{
	int r;
	mbedtls_ssl_init(&c->ssl);
	c->tls = 1;
	if (tls_setup(c->px) != 0) {
		ota_posix_log(c->px, OTA_LOG_ERROR, "event=tls-error step=setup err=\"CA file or RNG\"");
		return -1;
	}
	if ((r = mbedtls_ssl_setup(&c->ssl, &c->px->tls)) != 0 || (r = mbedtls_ssl_set_hostname(&c->ssl, host)) != 0) {
		log_tls(c->px, "setup", r);
		return -1;
	}
	mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
	for (;;) {
		r = mbedtls_ssl_handshake(&c->ssl);
		if (r == 0)
			return 0;
		if (r == MBEDTLS_ERR_SSL_WANT_READ && wait_fd(c->fd, POLLIN, c->px->io_timeout_ms) == 0)
			continue;
		if (r == MBEDTLS_ERR_SSL_WANT_WRITE && wait_fd(c->fd, POLLOUT, c->px->io_timeout_ms) == 0)
			continue;
		log_tls(c->px, "handshake", r);
		return -1;
	}
}

static int conn_send(conn *c, const void *buf, size_t n)
{
	const unsigned char *p = buf;
	while (n > 0) {
		int r = c->tls ? mbedtls_ssl_write(&c->ssl, p, n) : bio_send(c, p, n);
		if (r > 0) {
			p += r, n -= (size_t)r;
			continue;
		}
		if ((r == MBEDTLS_ERR_SSL_WANT_WRITE && wait_fd(c->fd, POLLOUT, c->px->io_timeout_ms) == 0) ||
		    (r == MBEDTLS_ERR_SSL_WANT_READ && wait_fd(c->fd, POLLIN, c->px->io_timeout_ms) == 0))
			continue;
		return -1;
	}
	return 0;
}

/* conn_recv: > 0 bytes, 0 at the end of the stream, < 0 on error or
 * timeout. */
static int conn_recv(conn *c, uint8_t *p, size_t n)
{
	for (;;) {
		int r = c->tls ? mbedtls_ssl_read(&c->ssl, p, n) : bio_recv(c, p, n);
		if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
			return 0;
		if (r >= 0)
			return r;
		if ((r == MBEDTLS_ERR_SSL_WANT_READ && wait_fd(c->fd, POLLIN, c->px->io_timeout_ms) == 0) ||
		    (r == MBEDTLS_ERR_SSL_WANT_WRITE && wait_fd(c->fd, POLLOUT, c->px->io_timeout_ms) == 0))
			continue;
		return -1;
	}
}

/* fill makes buffered bytes available: 1, or 0 at the end, -1 on error. */
static int fill(conn *c)
{
	int r;
	if (c->pos < c->end)
		return 1;
	if (c->eof)
		return 0;
	r = conn_recv(c, c->px->rx, sizeof c->px->rx);
	if (r < 0)
		return -1;
	if (r == 0) {
		c->eof = 1;
		return 0;
	}
	c->pos = 0, c->end = (size_t)r;
	return 1;
}

/* read_line reads one line without its CR LF into px->line. */
static int read_line(conn *c, size_t *len)
{
	size_t n = 0;
	for (;;) {
		uint8_t ch;
		if (fill(c) != 1)
			return -1;
		ch = c->px->rx[c->pos++];
		if (ch == '\n')
			break;
		if (n + 1 >= sizeof c->px->line)
			return -1;
		c->px->line[n++] = (char)ch;
	}
	if (n > 0 && c->px->line[n - 1] == '\r')
		n--;
	c->px->line[n] = 0;
	*len = n;
	return 0;
}

static int parse_i64(const char *s, int64_t *v)
{
	int64_t x = 0;
	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (x > (INT64_MAX - 9) / 10)
			return -1;
		x = x * 10 + (*s - '0');
	}
	*v = x;
	return 0;
}

/* header stores one "Name: value" line in resp. */
static int header(char *line, ota_http_response *resp, int *chunked)
{
	char *colon = strchr(line, ':'), *v, *end;
	int64_t x;
	if (!colon)
		return 0;
	*colon = 0;
	v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	end = v + strlen(v);
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = 0;
	if (strcasecmp(line, "Content-Length") == 0) {
		if (parse_i64(v, &x) != 0)
			return -1;
		resp->content_length = x;
	} else if (strcasecmp(line, "Transfer-Encoding") == 0) {
		if (strstr(v, "chunked"))
			*chunked = 1;
	} else if (strcasecmp(line, "Content-Range") == 0) {
		/* "bytes first-last/total" or "bytes * /total" */
		if (strncmp(v, "bytes ", 6) == 0) {
			char *p = v + 6, *dash = strchr(p, '-'), *slash = strchr(p, '/');
			if (dash && slash && dash < slash) {
				(void)parse_i64(p, &resp->range_first);
				(void)parse_i64(dash + 1, &resp->range_last);
			}
			if (slash && parse_i64(slash + 1, &x) == 0)
				resp->range_total = x;
		}
	} else if (strcasecmp(line, "ETag") == 0) {
		if (strlen(v) < sizeof resp->etag)
			strcpy(resp->etag, v);
	} else if (strcasecmp(line, "Retry-After") == 0) {
		if (parse_i64(v, &x) == 0)
			resp->retry_after = x > 86400 ? 86400 : (uint32_t)x;
	} else if (strcasecmp(line, "Location") == 0) {
		if (resp->location && resp->location_cap) {
			if (strlen(v) >= resp->location_cap)
				return -2;
			strcpy(resp->location, v);
		}
	}
	return 0;
}

static int deliver(conn *c, ota_http_response *resp, ota_http_body_fn on_body, void *arg, uint64_t n, int to_eof)
{
	while (to_eof || n > 0) {
		size_t take;
		int r = fill(c);
		if (r < 0)
			return OTA_ERR_IO;
		if (r == 0)
			return to_eof ? OTA_OK : OTA_ERR_IO;
		take = c->end - c->pos;
		if (!to_eof && take > n)
			take = (size_t)n;
		r = on_body(arg, resp, c->px->rx + c->pos, take);
		c->pos += take;
		n -= to_eof ? 0 : take;
		if (r != 0)
			return r;
	}
	return OTA_OK;
}

static int read_chunked(conn *c, ota_http_response *resp, ota_http_body_fn on_body, void *arg)
{
	for (;;) {
		size_t len;
		uint64_t size = 0;
		char *p;
		int r, digits = 0;
		if (read_line(c, &len) != 0)
			return OTA_ERR_IO;
		for (p = c->px->line; *p; p++, digits++) {
			int v = *p >= '0' && *p <= '9' ? *p - '0'
			        : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
			        : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10
			                                 : -1;
			if (v < 0)
				break; /* chunk extensions follow */
			if (size >> 60)
				return OTA_ERR_IO;
			size = size << 4 | (uint64_t)v;
		}
		if (digits == 0)
			return OTA_ERR_IO;
		if (size == 0)
			break;
		if ((r = deliver(c, resp, on_body, arg, size, 0)) != OTA_OK)
			return r;
		if (read_line(c, &len) != 0 || len != 0)
			return OTA_ERR_IO;
	}
	for (;;) { /* trailers, up to the empty line */
		size_t len;
		if (read_line(c, &len) != 0)
			return OTA_ERR_IO;
		if (len == 0)
			return OTA_OK;
	}
}

/* target picks where to connect: a --connect-to entry for host:port, or
 * the URL's own. */
static void target(ota_posix *px, const url_parts *u, char *host, size_t hcap, char *port, size_t pcap)
{
	size_t i, hl = strlen(u->host), pl = strlen(u->port);
	snprintf(host, hcap, "%s", u->host);
	snprintf(port, pcap, "%s", u->port);
	for (i = 0; i < px->n_connect_to; i++) {
		const char *e = px->connect_to[i], *h2, *p2;
		if (strncmp(e, u->host, hl) != 0 || e[hl] != ':' || strncmp(e + hl + 1, u->port, pl) != 0 ||
		    e[hl + 1 + pl] != ':')
			continue;
		h2 = e + hl + pl + 2;
		p2 = strrchr(h2, ':');
		if (!p2)
			continue;
		snprintf(host, hcap, "%.*s", (int)(p2 - h2), h2);
		snprintf(port, pcap, "%s", p2 + 1);
		return;
	}
}

static int send_request(conn *c, const ota_http_request *req, const url_parts *u)
{
	char *h = c->px->line;
	size_t cap = sizeof c->px->line;
	int n, def = strcmp(u->port, u->tls ? "443" : "80") == 0;
	const char *path = u->path[0] ? u->path : "/";
	n = snprintf(h, cap,
	             "%s %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\nUser-Agent: otaflow-mcu/1\r\nAccept: */*\r\nConnection: close\r\n",
	             req->method, path, strchr(u->host, ':') ? "[" : "", u->host, strchr(u->host, ':') ? "]" : "",
	             def ? "" : ":", def ? "" : u->port);
#define ADD(...)                                                                                                       \
	do {                                                                                                           \
		if (n >= 0 && (size_t)n < cap)                                                                         \
			n += snprintf(h + n, cap - (size_t)n, __VA_ARGS__);                                            \
	} while (0)
	if (req->authorization && req->authorization[0])
		ADD("Authorization: %s\r\n", req->authorization);
	if (req->range)
		ADD("Range: %s\r\n", req->range);
	if (req->if_range)
		ADD("If-Range: %s\r\n", req->if_range);
	if (req->content_type)
		ADD("Content-Type: %s\r\n", req->content_type);
	if (req->body || strcmp(req->method, "POST") == 0)
		ADD("Content-Length: %lu\r\n", (unsigned long)req->body_len);
	ADD("\r\n");
#undef ADD
	if (n < 0 || (size_t)n >= cap)
		return OTA_ERR_BUFFER;
	if (conn_send(c, h, (size_t)n) != 0)
		return OTA_ERR_IO;
	if (req->body_len && conn_send(c, req->body, req->body_len) != 0)
		return OTA_ERR_IO;
	return OTA_OK;
}

static int exchange(conn *c, const ota_http_request *req, const url_parts *u, ota_http_response *resp,
                    ota_http_body_fn on_body, void *arg)
{
	size_t len;
	int r, chunked = 0, loc_err = 0;
	char *sp;
	if ((r = send_request(c, req, u)) != OTA_OK)
		return r;
	do { /* skip 1xx interim answers */
		if (read_line(c, &len) != 0 || strncmp(c->px->line, "HTTP/1.", 7) != 0)
			return OTA_ERR_IO;
		sp = strchr(c->px->line, ' ');
		if (!sp || sp[1] < '1' || sp[1] > '5' || sp[2] < '0' || sp[2] > '9' || sp[3] < '0' || sp[3] > '9')
			return OTA_ERR_IO;
		resp->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
		for (;;) {
			if (read_line(c, &len) != 0)
				return OTA_ERR_IO;
			if (len == 0)
				break;
			r = header(c->px->line, resp, &chunked);
			if (r == -1)
				return OTA_ERR_IO;
			if (r == -2)
				loc_err = 1;
		}
	} while (resp->status >= 100 && resp->status < 200);
	if (loc_err)
		return OTA_ERR_BUFFER;
	if (strcmp(req->method, "HEAD") == 0 || resp->status == 204 || resp->status == 304)
		return OTA_OK;
	if (chunked) {
		resp->content_length = -1;
		return read_chunked(c, resp, on_body, arg);
	}
	if (resp->content_length >= 0)
		return deliver(c, resp, on_body, arg, (uint64_t)resp->content_length, 0);
	return deliver(c, resp, on_body, arg, 0, 1);
}

int ota_posix_http(void *ctx, const ota_http_request *req, ota_http_response *resp, ota_http_body_fn on_body,
                   void *arg)
{
	ota_posix *px = ctx;
	url_parts u;
	char host[256], port[8];
	conn c;
	int r;
	if (parse_url(req->url, &u) != 0)
		return OTA_ERR_ARG;
	memset(&c, 0, sizeof c);
	c.px = px;
	target(px, &u, host, sizeof host, port, sizeof port);
	c.fd = dial(px, host, port);
	if (c.fd < 0) {
		char line[400];
		snprintf(line, sizeof line, "event=connect-failed host=%s port=%s", host, port);
		ota_posix_log(px, OTA_LOG_DEBUG, line);
		return OTA_ERR_IO;
	}
	if (u.tls && tls_start(&c, u.host) != 0)
		r = OTA_ERR_IO;
	else
		r = exchange(&c, req, &u, resp, on_body, arg);
	if (c.tls) {
		if (r == OTA_OK)
			(void)mbedtls_ssl_close_notify(&c.ssl);
		mbedtls_ssl_free(&c.ssl);
	}
	close(c.fd);
	return r;
}
