/*
 * The POSIX port: storage as files, the installer as a file, clock,
 * random bytes, log and reboot. HTTP is in http_posix.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ota_assignment.h"
#include "ota_crypto.h"
#include "ota_posix.h"

/* ota_crypto_random for the library's key generation: the kernel's CSPRNG. */
int ota_crypto_random(void *buf, size_t n)
{
	uint8_t *p = buf;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return OTA_ERR_CRYPTO;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			close(fd);
			return OTA_ERR_CRYPTO;
		}
		p += r, n -= (size_t)r;
	}
	close(fd);
	return OTA_OK;
}

static int px_random(void *ctx, uint8_t *p, size_t n)
{
	(void)ctx;
	return ota_crypto_random(p, n);
}

static int64_t px_now(void *ctx)
{
	(void)ctx;
	return (int64_t)time(NULL);
}

void ota_posix_log(void *ctx, int level, const char *line)
{
	ota_posix *px = ctx;
	static const char *const names[] = {"debug", "info", "warn", "error"};
	struct timeval tv;
	if (level < OTA_LOG_INFO && !px->verbose)
		return;
	gettimeofday(&tv, NULL);
	fprintf(stderr, "%s ts=%ld.%03ld level=%s %s\n", px->log_name ? px->log_name : "otaflow-mcu-client",
	        (long)tv.tv_sec, (long)(tv.tv_usec / 1000), names[level & 3], line);
	fflush(stderr);
}

/* ---- storage: one file per record, replaced by rename ---- */

static int valid_name(const char *name)
{
	size_t n = strlen(name);
	return n > 0 && n <= 32 && strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

static int path_of(const ota_posix *px, const char *name, const char *suffix, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%s%s", px->state_dir, name, suffix);
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_CLOEXEC), r;
	if (fd < 0)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r, n -= (size_t)r;
	}
	return 0;
}

int ota_posix_store_get(void *ctx, const char *name, uint8_t *buf, size_t cap, size_t *len)
{
	ota_posix *px = ctx;
	char path[1024];
	size_t n = 0;
	int fd;
	*len = 0;
	if (!valid_name(name) || path_of(px, name, "", path, sizeof path) != 0)
		return OTA_ERR_ARG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? OTA_OK : OTA_ERR_STORAGE;
	for (;;) {
		ssize_t r;
		if (n == cap) { /* larger than the caller expects */
			uint8_t extra;
			r = read(fd, &extra, 1);
			close(fd);
			return r == 0 ? (*len = n, OTA_OK) : OTA_ERR_STORAGE;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			close(fd);
			return OTA_ERR_STORAGE;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*len = n;
	return OTA_OK;
}

int ota_posix_store_put(void *ctx, const char *name, const uint8_t *p, size_t n)
{
	ota_posix *px = ctx;
	char path[1024], tmp[1040];
	int fd;
	if (!valid_name(name) || path_of(px, name, "", path, sizeof path) != 0 ||
	    path_of(px, name, ".tmp", tmp, sizeof tmp) != 0)
		return OTA_ERR_ARG;
	if (n == 0) {
		if (unlink(path) != 0 && errno != ENOENT)
			return OTA_ERR_STORAGE;
		return sync_dir(px->state_dir) == 0 ? OTA_OK : OTA_ERR_STORAGE;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return OTA_ERR_STORAGE;
	if (write_all(fd, p, n) != 0 || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return OTA_ERR_STORAGE;
	}
	close(fd);
	if (rename(tmp, path) != 0 || sync_dir(px->state_dir) != 0)
		return OTA_ERR_STORAGE;
	return OTA_OK;
}

/* ---- the installer: <install_to>.part, renamed when finished ---- */

static int part_path(const ota_posix *px, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s.part", px->install_to);
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int px_install_open(void *ctx, uint64_t size, int resume)
{
	ota_posix *px = ctx;
	char part[1024];
	(void)size;
	if (px->install_fd >= 0) {
		close(px->install_fd);
		px->install_fd = -1;
	}
	if (part_path(px, part, sizeof part) != 0)
		return OTA_ERR_INSTALL;
	px->install_fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC | (resume ? 0 : O_TRUNC), 0644);
	return px->install_fd >= 0 ? OTA_OK : OTA_ERR_INSTALL;
}

static int px_install_write(void *ctx, uint64_t off, const uint8_t *p, size_t n)
{
	ota_posix *px = ctx;
	while (n > 0) {
		ssize_t r = pwrite(px->install_fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return OTA_ERR_INSTALL;
		p += r, n -= (size_t)r, off += (uint64_t)r;
	}
	return fdatasync(px->install_fd) == 0 ? OTA_OK : OTA_ERR_INSTALL;
}

static int px_install_read(void *ctx, uint64_t off, uint8_t *p, size_t n)
{
	ota_posix *px = ctx;
	while (n > 0) {
		ssize_t r = pread(px->install_fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return OTA_ERR_INSTALL;
		p += r, n -= (size_t)r, off += (uint64_t)r;
	}
	return OTA_OK;
}

static int px_install_finish(void *ctx, const char *version)
{
	ota_posix *px = ctx;
	char part[1024], dir[1024], *slash;
	if (px->install_fd < 0 || part_path(px, part, sizeof part) != 0)
		return OTA_ERR_INSTALL;
	if (fsync(px->install_fd) != 0) {
		close(px->install_fd);
		px->install_fd = -1;
		return OTA_ERR_INSTALL;
	}
	close(px->install_fd);
	px->install_fd = -1;
	if (rename(part, px->install_to) != 0)
		return OTA_ERR_INSTALL;
	snprintf(dir, sizeof dir, "%s", px->install_to);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	(void)sync_dir(slash ? (dir[0] ? dir : "/") : ".");
	/* The simulated bootloader boots this version next. */
	return ota_posix_store_put(px, "bootnext", (const uint8_t *)version, strlen(version)) == OTA_OK ? OTA_OK
	                                                                                                 : OTA_ERR_INSTALL;
}

static void px_install_abort(void *ctx)
{
	ota_posix *px = ctx;
	char part[1024];
	if (px->install_fd >= 0) {
		close(px->install_fd);
		px->install_fd = -1;
	}
	if (part_path(px, part, sizeof part) == 0)
		(void)unlink(part);
}

/* reboot re-executes the program: a new process image, a new boot ID,
 * and the simulated bootloader's "bootnext" version. */
static void px_reboot(void *ctx)
{
	ota_posix *px = ctx;
	if (!px->argv)
		return;
	ota_posix_log(px, OTA_LOG_INFO, "event=rebooting");
	execv("/proc/self/exe", px->argv);
	execv(px->argv[0], px->argv);
	ota_posix_log(px, OTA_LOG_ERROR, "event=reboot-failed");
}

void ota_posix_init(ota_posix *px)
{
	memset(px, 0, sizeof *px);
	px->install_fd = -1;
	px->connect_timeout_ms = 10000;
	px->io_timeout_ms = 30000;
	px->ca_file = "/etc/ssl/certs/ca-certificates.crt";
}

void ota_posix_platform(ota_posix *px, ota_platform *p)
{
	memset(p, 0, sizeof *p);
	p->ctx = px;
	p->http = ota_posix_http;
	p->store_get = ota_posix_store_get;
	p->store_put = ota_posix_store_put;
	p->install_open = px_install_open;
	p->install_write = px_install_write;
	p->install_read = px_install_read;
	p->install_finish = px_install_finish;
	p->install_abort = px_install_abort;
	p->now = px_now;
	p->random = px_random;
	p->log = ota_posix_log;
	p->reboot = px_reboot;
}

void ota_posix_free(ota_posix *px)
{
	if (px->install_fd >= 0)
		close(px->install_fd);
	px->install_fd = -1;
	if (px->tls_ready) {
		mbedtls_ssl_config_free(&px->tls);
		mbedtls_x509_crt_free(&px->ca);
		mbedtls_ctr_drbg_free(&px->drbg);
		mbedtls_entropy_free(&px->entropy);
		px->tls_ready = 0;
	}
}
