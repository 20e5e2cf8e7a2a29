/*
 * otaflow-mcu-client: the device library's client on POSIX, as a device
 * runs it: generate the device key at first start, enroll, poll, update,
 * "reboot" (re-execute) into the installed version, confirm.
 *
 * The simulated bootloader: the installer's finish stores the new version
 * as the "bootnext" record; a start that finds it runs that version.
 *
 * Logs go to stderr, one line per event: "<name> ts=... level=... event=...
 * key=value ...".
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ota_client.h"
#include "ota_envelope.h"
#include "ota_posix.h"

#define MAX_LABELS 32
#define MAX_KEYS 8

typedef struct {
	const char *server, *state_dir, *device_id, *device_type, *version, *token_file, *kem, *vendor_key, *install_to;
	const char *exit_after, *ca_file;
	const char *assignment_keys[MAX_KEYS];
	size_t n_keys;
	const char *labels[MAX_LABELS];
	size_t n_labels;
	const char *connect_to[OTA_POSIX_MAX_CONNECT_TO];
	size_t n_connect_to;
	int require_vendor, verbose;
	long poll_ms, max_runtime_s, key_check_s;
	uint64_t floor;
} options;

/* Everything the client needs lives here, not on the stack. */
static ota_posix port;
static ota_platform plat;
static ota_client client;
static ota_client_config cfg;
static ota_device_key device_key;
static ota_pubkey trusted[MAX_KEYS];
static ota_pubkey key_store[OTA_KEYSET_MAX_KEYS];
static ota_pubkey vendor;
static const char *label_keys[MAX_LABELS], *label_values[MAX_LABELS];
static char label_text[MAX_LABELS][320];
static ota_assignment assignment;
static uint8_t chunk_buf[ota_env_buf_size(OTA_ENV_DEFAULT_LOG2)];
/* Room for a key set of 16 keys (about 8.5 KB) and a URL. */
static char body_buf[12288];
static char version[OTA_VERSION_MAX + 1];
static char token[1024];
static char boot_id[17];
static char log_name[160];

static void usage(void)
{
	fprintf(stderr,
	        "usage: otaflow-mcu-client --server URL --state-dir DIR --device-id ID --bootstrap-token-file FILE\n"
	        "         --assignment-key PEM [--assignment-key PEM]... --install-to FILE [options]\n"
	        "  --device-type T             device type (default sensor-v1)\n"
	        "  --label k=v                 enrollment label (repeatable)\n"
	        "  --version V                 firmware version at first start (default 0.0.0)\n"
	        "  --security-floor N          provisioned security floor\n"
	        "  --kem x25519|p256           device key type at first start (default x25519)\n"
	        "  --vendor-key PEM            the vendor's public key\n"
	        "  --require-vendor-signature  refuse images without a verified vendor signature\n"
	        "  --poll-interval MS          between update checks (default 5000)\n"
	        "  --key-check-interval S      between checks of the server's key set (default 3600; 0:\n"
	        "                              only when a key is named that the device does not trust)\n"
	        "  --exit-after-state S        exit 0 once: failed (reported), succeeded (reported and\n"
	        "                              checked in on the new version), committed (floor raised)\n"
	        "  --max-runtime SECONDS       exit 3 after this long (across reboots)\n"
	        "  --ca-file PEM               CA bundle for https:// (default the system's)\n"
	        "  --connect-to H:P:H2:P2      connect to H2:P2 for URLs naming H:P (repeatable)\n"
	        "  --verbose                   log debug events too\n");
}

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "%s level=error event=fatal what=\"%s\" detail=\"%s\"\n", log_name[0] ? log_name : "otaflow-mcu-client",
	        what, detail ? detail : "");
	exit(2);
}

static void logf_event(const char *line)
{
	ota_posix_log(&port, OTA_LOG_INFO, line);
}

static int parse_args(int argc, char **argv, options *o)
{
	int i;
	memset(o, 0, sizeof *o);
	o->device_type = "sensor-v1";
	o->kem = "x25519";
	o->poll_ms = 5000;
	o->key_check_s = OTA_CLIENT_KEY_CHECK_DEFAULT;
	for (i = 1; i < argc; i++) {
		char *a = argv[i], *v = NULL, *eq;
		char name[64];
		if (strncmp(a, "--", 2) != 0)
			return -1;
		eq = strchr(a, '=');
		if (eq) {
			size_t n = (size_t)(eq - a);
			if (n >= sizeof name)
				return -1;
			memcpy(name, a, n);
			name[n] = 0;
			v = eq + 1;
		} else {
			snprintf(name, sizeof name, "%s", a);
		}
		if (strcmp(name, "--require-vendor-signature") == 0) {
			o->require_vendor = 1;
			continue;
		}
		if (strcmp(name, "--verbose") == 0) {
			o->verbose = 1;
			continue;
		}
		if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
			return -1;
		if (!v) {
			if (i + 1 >= argc)
				return -1;
			v = argv[++i];
		}
		if (strcmp(name, "--server") == 0)
			o->server = v;
		else if (strcmp(name, "--state-dir") == 0)
			o->state_dir = v;
		else if (strcmp(name, "--device-id") == 0)
			o->device_id = v;
		else if (strcmp(name, "--device-type") == 0)
			o->device_type = v;
		else if (strcmp(name, "--version") == 0)
			o->version = v;
		else if (strcmp(name, "--bootstrap-token-file") == 0)
			o->token_file = v;
		else if (strcmp(name, "--kem") == 0)
			o->kem = v;
		else if (strcmp(name, "--vendor-key") == 0)
			o->vendor_key = v;
		else if (strcmp(name, "--install-to") == 0)
			o->install_to = v;
		else if (strcmp(name, "--exit-after-state") == 0)
			o->exit_after = v;
		else if (strcmp(name, "--ca-file") == 0)
			o->ca_file = v;
		else if (strcmp(name, "--poll-interval") == 0)
			o->poll_ms = strtol(v, NULL, 10);
		else if (strcmp(name, "--key-check-interval") == 0) {
			char *end;
			o->key_check_s = strtol(v, &end, 10);
			if (*end || end == v || o->key_check_s < 0 || o->key_check_s > 86400L * 365)
				return -1;
		} else if (strcmp(name, "--max-runtime") == 0)
			o->max_runtime_s = strtol(v, NULL, 10);
		else if (strcmp(name, "--security-floor") == 0)
			o->floor = strtoull(v, NULL, 10);
		else if (strcmp(name, "--assignment-key") == 0 && o->n_keys < MAX_KEYS)
			o->assignment_keys[o->n_keys++] = v;
		else if (strcmp(name, "--label") == 0 && o->n_labels < MAX_LABELS && strchr(v, '='))
			o->labels[o->n_labels++] = v;
		else if (strcmp(name, "--connect-to") == 0 && o->n_connect_to < OTA_POSIX_MAX_CONNECT_TO)
			o->connect_to[o->n_connect_to++] = v;
		else
			return -1;
	}
	if (!o->server || !o->state_dir || !o->device_id || !o->token_file || !o->n_keys || !o->install_to ||
	    o->poll_ms <= 0)
		return -1;
	if (o->exit_after && strcmp(o->exit_after, "failed") != 0 && strcmp(o->exit_after, "succeeded") != 0 &&
	    strcmp(o->exit_after, "committed") != 0)
		return -1;
	return 0;
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	size_t n;
	if (!f)
		die("cannot read", path);
	n = fread(buf, 1, cap - 1, f);
	if (ferror(f) || !feof(f))
		die("cannot read (or too large)", path);
	fclose(f);
	buf[n] = 0;
	return n;
}

static void load_pubkey(ota_pubkey *k, const char *path)
{
	char pem[4096];
	size_t n = read_file(path, pem, sizeof pem);
	if (ota_pubkey_from_pem(k, pem, n) != OTA_OK)
		die("not an Ed25519 or P-256 PUBLIC KEY PEM", path);
}

/* load_device_key reads the "devkey" record (KEM byte, private key) or
 * makes one at first start. */
static void load_device_key(const char *kem_name)
{
	uint8_t rec[33];
	size_t n = 0;
	int kem = strcmp(kem_name, "p256") == 0 ? OTA_KEM_P256 : OTA_KEM_X25519;
	if (strcmp(kem_name, "p256") != 0 && strcmp(kem_name, "x25519") != 0)
		die("--kem must be x25519 or p256", kem_name);
	if (ota_posix_store_get(&port, "devkey", rec, sizeof rec, &n) != OTA_OK)
		die("cannot read the device key", port.state_dir);
	if (n == sizeof rec) {
		if (ota_device_key_from_priv(&device_key, rec[0], rec + 1) != OTA_OK)
			die("stored device key unusable", NULL);
		memset(rec, 0, sizeof rec);
		return;
	}
	if (ota_device_key_generate(&device_key, kem) != OTA_OK)
		die("cannot generate the device key", NULL);
	rec[0] = device_key.kem;
	memcpy(rec + 1, device_key.priv, 32);
	if (ota_posix_store_put(&port, "devkey", rec, sizeof rec) != OTA_OK)
		die("cannot store the device key", port.state_dir);
	memset(rec, 0, sizeof rec);
	logf_event(kem == OTA_KEM_P256 ? "event=device-key-generated kem=p256" : "event=device-key-generated kem=x25519");
}

/* boot is the simulated bootloader: the version installed last, or the
 * one running before, or the initial one. */
static void boot(const char *initial)
{
	size_t n = 0;
	char line[300];
	if (ota_posix_store_get(&port, "bootnext", (uint8_t *)version, sizeof version - 1, &n) != OTA_OK)
		die("cannot read the boot record", NULL);
	if (n > 0) {
		version[n] = 0;
		if (ota_posix_store_put(&port, "version", (const uint8_t *)version, n) != OTA_OK ||
		    ota_posix_store_put(&port, "bootnext", NULL, 0) != OTA_OK)
			die("cannot store the version", NULL);
	} else {
		if (ota_posix_store_get(&port, "version", (uint8_t *)version, sizeof version - 1, &n) != OTA_OK)
			die("cannot read the version", NULL);
		if (n == 0) {
			snprintf(version, sizeof version, "%s", initial ? initial : "0.0.0");
			n = strlen(version);
			if (ota_posix_store_put(&port, "version", (const uint8_t *)version, n) != OTA_OK)
				die("cannot store the version", NULL);
		}
		version[n] = 0;
	}
	snprintf(line, sizeof line, "event=boot version=%s boot=%s", version, boot_id);
	logf_event(line);
}

static void sleep_ms(long ms)
{
	struct timespec ts;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static long jitter(long ms)
{
	uint8_t r[2];
	if (ms < 10 || ota_crypto_random(r, sizeof r) != OTA_OK)
		return ms;
	return ms * 3 / 4 + (long)(((unsigned)r[0] << 8 | r[1]) % (unsigned long)(ms / 2 + 1));
}

int main(int argc, char **argv)
{
	options o;
	uint8_t rb[8];
	size_t i, n;
	long backoff = 0;
	time_t deadline = 0;
	uint64_t start_floor;
	uint32_t checks_at_success = 0;
	int success_seen = 0;
	char line[400];
	const char *dl;
	if (parse_args(argc, argv, &o) != 0) {
		usage();
		return 2;
	}
	snprintf(log_name, sizeof log_name, "otaflow-mcu-client device=%s", o.device_id);
	signal(SIGPIPE, SIG_IGN);
	ota_posix_init(&port);
	port.state_dir = o.state_dir;
	port.install_to = o.install_to;
	if (o.ca_file)
		port.ca_file = o.ca_file;
	for (i = 0; i < o.n_connect_to; i++)
		port.connect_to[i] = o.connect_to[i];
	port.n_connect_to = o.n_connect_to;
	port.verbose = o.verbose;
	port.log_name = log_name;
	port.argv = argv;
	ota_posix_platform(&port, &plat);
	if (mkdir(o.state_dir, 0700) != 0 && errno != EEXIST)
		die("cannot create the state directory", o.state_dir);

	/* The deadline holds across reboots (re-executions). */
	dl = getenv("OTAFLOW_MCU_DEADLINE");
	if (dl)
		deadline = (time_t)strtoll(dl, NULL, 10);
	else if (o.max_runtime_s > 0) {
		char v[32];
		deadline = time(NULL) + o.max_runtime_s;
		snprintf(v, sizeof v, "%lld", (long long)deadline);
		setenv("OTAFLOW_MCU_DEADLINE", v, 1);
	}

	/* Every start is a boot: a new boot ID. */
	if (ota_crypto_random(rb, sizeof rb) != OTA_OK)
		die("no random source", NULL);
	ota_hex_encode(rb, sizeof rb, boot_id);
	load_device_key(o.kem);
	boot(o.version);

	n = read_file(o.token_file, token, sizeof token);
	while (n > 0 && (token[n - 1] == '\n' || token[n - 1] == '\r' || token[n - 1] == ' '))
		token[--n] = 0;
	for (i = 0; i < o.n_keys; i++)
		load_pubkey(&trusted[i], o.assignment_keys[i]);
	if (o.vendor_key)
		load_pubkey(&vendor, o.vendor_key);
	/* Copies: argv stays as it was for the re-execution at reboot. */
	for (i = 0; i < o.n_labels; i++) {
		char *eq;
		if (strlen(o.labels[i]) >= sizeof label_text[i])
			die("label too long", o.labels[i]);
		strcpy(label_text[i], o.labels[i]);
		eq = strchr(label_text[i], '=');
		*eq = 0;
		label_keys[i] = label_text[i];
		label_values[i] = eq + 1;
	}

	cfg.server_url = o.server;
	cfg.device_id = o.device_id;
	cfg.device_type = o.device_type;
	cfg.label_keys = label_keys;
	cfg.label_values = label_values;
	cfg.n_labels = o.n_labels;
	cfg.version = version;
	cfg.boot_id = boot_id;
	cfg.bootstrap_token = token;
	cfg.device_key = &device_key;
	cfg.assignment_keys = trusted;
	cfg.n_assignment_keys = o.n_keys;
	cfg.key_store = key_store;
	cfg.key_store_cap = OTA_KEYSET_MAX_KEYS;
	cfg.key_check_interval = o.key_check_s ? (uint32_t)o.key_check_s : OTA_CLIENT_KEY_CHECK_NEVER;
	cfg.vendor_key = o.vendor_key ? &vendor : NULL;
	cfg.require_vendor_signature = o.require_vendor;
	cfg.security_floor = o.floor;
	cfg.chunk_buf = chunk_buf;
	cfg.chunk_cap = sizeof chunk_buf;
	cfg.body_buf = body_buf;
	cfg.body_cap = sizeof body_buf;
	if (ota_client_init(&client, &plat, &cfg) != OTA_OK)
		die("client configuration refused", NULL);
	start_floor = client.floor;
	snprintf(line, sizeof line, "event=start client_bytes=%lu chunk_buf=%lu body_buf=%lu floor=%llu key_serial=%llu",
	         (unsigned long)sizeof client, (unsigned long)sizeof chunk_buf, (unsigned long)sizeof body_buf,
	         (unsigned long long)client.floor, (unsigned long long)client.key_serial);
	logf_event(line);

	for (;;) {
		uint8_t reported_before = client.last_reported;
		uint32_t checks_before = client.checks;
		long wait = o.poll_ms;
		int e;
		if (deadline && time(NULL) >= deadline) {
			logf_event("event=max-runtime");
			return 3;
		}
		e = ota_client_poll(&client, &assignment);
		if (o.exit_after) {
			if (strcmp(o.exit_after, "failed") == 0 && client.last_reported == OTA_STATE_FAILED) {
				logf_event("event=exit state=failed");
				return 0;
			}
			if (strcmp(o.exit_after, "committed") == 0 && client.floor > start_floor) {
				logf_event("event=exit state=committed");
				return 0;
			}
			if (strcmp(o.exit_after, "succeeded") == 0 && client.last_reported == OTA_STATE_SUCCEEDED) {
				/* A check after the report is what makes it count. */
				if (!success_seen) {
					success_seen = 1;
					checks_at_success = reported_before == OTA_STATE_SUCCEEDED ? client.checks : checks_before;
				}
				if (client.checks > checks_at_success) {
					logf_event("event=exit state=succeeded");
					return 0;
				}
			}
		}
		if (e == OTA_ERR_IO || e == OTA_ERR_HTTP || e == OTA_ERR_STORAGE) {
			backoff = backoff ? backoff * 2 : o.poll_ms;
			if (backoff > 60000)
				backoff = 60000;
			wait = jitter(backoff);
			snprintf(line, sizeof line, "event=retry err=%s status=%d wait_ms=%ld", ota_err_code(e),
			         client.http_status, wait);
			logf_event(line);
		} else {
			backoff = 0;
			if (e != OTA_OK) {
				snprintf(line, sizeof line, "event=poll-result err=%s", ota_err_code(e));
				logf_event(line);
			}
		}
		if ((long)client.retry_after * 1000 > wait)
			wait = (long)client.retry_after * 1000;
		sleep_ms(wait);
	}
}
