/*
 * ota_ed25519_check against Go's crypto/ed25519.Verify: every case of
 * test/ed25519_cases.txt (written by hack/mcu-ed25519-cases) must get Go's
 * verdict. Then a rough speed figure on this machine.
 *
 *   test_ed25519 [cases-file]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ota_crypto.h"

#define MAX_SECTIONS 32
#define MAX_LINE 65536 /* the longest message is a few KiB */

typedef struct {
	char name[40];
	int cases, accepted, mismatches;
} section;

typedef struct {
	uint8_t pub[32], sig[64], h[64];
} bench_case;

/* Decodes exactly n bytes of hex; 0 on any other input. */
static int unhex(const char *s, uint8_t *out, size_t n)
{
	return strlen(s) == 2 * n && ota_hex_decode(s, 2 * n, out, n, NULL) == OTA_OK;
}

/* h = SHA-512(R || A || msg), as the library's callers compute it. */
static int hram(uint8_t h[64], const uint8_t sig[64], const uint8_t pub[32], const uint8_t *msg, size_t len)
{
	ota_sha512_ctx c;
	ota_sha512_init(&c);
	ota_sha512_update(&c, sig, 32);
	ota_sha512_update(&c, pub, 32);
	if (len > 0)
		ota_sha512_update(&c, msg, len);
	ota_sha512_final(&c, h);
	return 1;
}

/* Processor time: plain C, so the test also runs on a bare-metal libc. */
static double now(void)
{
	return (double)clock() / CLOCKS_PER_SEC;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "test/ed25519_cases.txt";
	section sections[MAX_SECTIONS];
	int nsections = 0, total = 0, mismatches = 0, lineno = 0;
	bench_case *bench = NULL;
	size_t nbench = 0, capbench = 0;
	char *line = malloc(MAX_LINE);
	uint8_t *msg = NULL;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		perror(path);
		return 2;
	}
	if (line == NULL) {
		fprintf(stderr, "out of memory\n");
		return 2;
	}
	memset(sections, 0, sizeof sections);
	while (fgets(line, MAX_LINE, f) != NULL) {
		char *fields[5], *tok;
		int n = 0, want, got, rc;
		uint8_t pub[32], sig[64], h[64];
		size_t mlen;
		section *s;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			fprintf(stderr, "%s:%d: line too long\n", path, lineno);
			return 2;
		}
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		if (line[0] == '#') {
			const char *p = "# section: ";
			if (strncmp(line, p, strlen(p)) == 0) {
				if (nsections == MAX_SECTIONS) {
					fprintf(stderr, "%s:%d: too many sections\n", path, lineno);
					return 2;
				}
				snprintf(sections[nsections++].name, sizeof sections[0].name, "%s", line + strlen(p));
			}
			continue;
		}
		for (tok = strtok(line, " "); tok != NULL && n < 5; tok = strtok(NULL, " "))
			fields[n++] = tok;
		if (n != 4 || !unhex(fields[0], pub, 32) || !unhex(fields[1], sig, 64) ||
		    (strcmp(fields[3], "0") != 0 && strcmp(fields[3], "1") != 0)) {
			fprintf(stderr, "%s:%d: malformed case\n", path, lineno);
			return 2;
		}
		mlen = strcmp(fields[2], "-") == 0 ? 0 : strlen(fields[2]) / 2;
		free(msg);
		msg = malloc(mlen + 1);
		if (msg == NULL || (mlen > 0 && !unhex(fields[2], msg, mlen))) {
			fprintf(stderr, "%s:%d: malformed message\n", path, lineno);
			return 2;
		}
		want = fields[3][0] == '1';
		if (!hram(h, sig, pub, msg, mlen)) {
			fprintf(stderr, "%s:%d: SHA-512 failed\n", path, lineno);
			return 2;
		}

		rc = ota_ed25519_check(pub, sig, h);
		if (rc != OTA_OK && rc != OTA_ERR_BAD_SIGNATURE) {
			fprintf(stderr, "%s:%d: unexpected return %d\n", path, lineno, rc);
			return 2;
		}
		got = rc == OTA_OK;
		if (nsections == 0)
			snprintf(sections[nsections++].name, sizeof sections[0].name, "%s", "(none)");
		s = &sections[nsections - 1];
		s->cases++;
		s->accepted += want;
		total++;
		if (got != want) {
			s->mismatches++;
			if (mismatches++ < 10)
				fprintf(stderr, "%s:%d (%s): Go says %s, ota_ed25519_check says %s\n", path, lineno,
				        s->name, want ? "valid" : "invalid", got ? "valid" : "invalid");
		}
		if (want) {
			if (nbench == capbench) {
				bench_case *nb;
				capbench = capbench ? 2 * capbench : 64;
				nb = realloc(bench, capbench * sizeof *bench);
				if (nb == NULL) {
					fprintf(stderr, "out of memory\n");
					return 2;
				}
				bench = nb;
			}
			memcpy(bench[nbench].pub, pub, 32);
			memcpy(bench[nbench].sig, sig, 64);
			memcpy(bench[nbench].h, h, 64);
			nbench++;
		}
	}
	fclose(f);
	free(line);
	free(msg);

	printf("%-18s %6s %8s %10s\n", "section", "cases", "accepted", "mismatches");
	{
		int i;
		for (i = 0; i < nsections; i++)
			printf("%-18s %6d %8d %10d\n", sections[i].name, sections[i].cases, sections[i].accepted,
			       sections[i].mismatches);
	}
	printf("ed25519: %d cases, %d mismatches with Go\n", total, mismatches);
	if (total == 0) {
		fprintf(stderr, "%s: no cases\n", path);
		return 1;
	}
	if (mismatches != 0)
		return 1;

	/* Speed: the accepted cases over and over for about a second. */
	if (nbench > 0) {
		double t0 = now(), t;
		long runs = 0;
		do {
			size_t i;
			for (i = 0; i < nbench; i++) {
				if (ota_ed25519_check(bench[i].pub, bench[i].sig, bench[i].h) != OTA_OK) {
					fprintf(stderr, "benchmark: a valid case failed\n");
					return 1;
				}
			}
			runs += (long)nbench;
			t = now() - t0;
		} while (t < 1.0);
		printf("ed25519: %ld verifications/s on this machine (%ld us each)\n", (long)(runs / t),
		       (long)(1e6 * t / runs));
	}
	free(bench);
	return 0;
}
