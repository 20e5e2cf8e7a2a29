/* The conformance runner (testdata/conformance, docs/conformance.md),
 * shared by the host build and the Cortex-M4 build under QEMU. */
#ifndef OTAFLOW_TEST_VECTORS_H
#define OTAFLOW_TEST_VECTORS_H

#include <stddef.h>

/* Result of one vector file. */
typedef struct {
	int run, passed;
	int class_exact; /* refusals whose class is the Go one */
} vec_result;

/* vec_run_file runs the vectors of one file's text (name is the base
 * name, "1-chunks.json" ...), printing one line per failure and a summary.
 * Returns 0 when every vector passed. */
int vec_run_file(const char *name, char *text, size_t len, vec_result *res);

/* The names of the files, in order, NULL-terminated. */
extern const char *const vec_files[];

#endif
