/* Runs every conformance file of a directory (argv[1]); reads them with
 * stdio, which the Cortex-M4 build gets through semihosting. */
#include <stdio.h>
#include <string.h>

#include "ota_crypto.h"
#include "vectors.h"

static char text[1 << 20];

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "testdata/conformance";
	int i, fail = 0, total = 0, passed = 0;
	for (i = 0; vec_files[i]; i++) {
		char path[512];
		FILE *f;
		size_t n;
		vec_result r;
		snprintf(path, sizeof path, "%s/%s", dir, vec_files[i]);
		if (!(f = fopen(path, "rb"))) {
			printf("FAIL %s: cannot open\n", path);
			fail = 1;
			continue;
		}
		n = fread(text, 1, sizeof text, f);
		fclose(f);
		if (n == sizeof text) {
			printf("FAIL %s: larger than %lu bytes\n", path, (unsigned long)sizeof text);
			fail = 1;
			continue;
		}
		fail |= vec_run_file(vec_files[i], text, n, &r);
		total += r.run;
		passed += r.passed;
	}
	printf("conformance: %d/%d vectors passed\nRESULT: %s\n", passed, total, fail ? "FAIL" : "PASS");
	return fail;
}
