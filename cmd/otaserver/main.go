// Command otaserver serves the device API (protocol v1) beside the
// manager: devices enroll, poll for signed assignments, download encrypted
// blobs and report status, which is batched into Rollout.status.
//
// Every flag can also be set from the environment as OTASERVER_<FLAG>,
// upper case with dashes as underscores (OTASERVER_TLS_CERT_FILE); a flag on
// the command line wins.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/otaflow/otaflow/otaserver"
)

type options struct {
	deviceAddr, metricsAddr  string
	probeAddr                string
	metricsSecure            bool
	metricsCertDir           string
	tlsCert, tlsKey          string
	insecureHTTP             bool
	dataDir, blobDir         string
	blobStore                string
	leaderElect              bool
	leaderElectionID         string
	cutoffsTTL               time.Duration
	blobRedirectTTL          time.Duration
	storeDSN                 string
	namespace, namespaces    string
	enrollSecret             string
	clusterWideDevices       bool
	enrollFailRate           time.Duration
	enrollFailBurst          int
	signingSecret, signField string
	signingKeyFile           string
	publicURL                string
	reportInterval           time.Duration
	statusHeartbeat          time.Duration
	assignmentTTL            time.Duration
	deviceRate               float64
	deviceBurst              int
	shutdownTimeout          time.Duration
	httpLimits               otaserver.HTTPLimits
	memoryLimitRatio         float64
	ddi                      bool
	ddiExternalURL           string
	ddiPoll, ddiActivePoll   time.Duration
	ddiAttributesRefresh     time.Duration
	mender                   bool
	menderExternalURL        string
	menderTokenSecret        string
	menderTokenTTL           time.Duration
	menderLinkTTL            time.Duration
	deviceAPI                deviceAPIOptions
}

func main() {
	var o options
	fs := flag.CommandLine
	fs.StringVar(&o.deviceAddr, "device-bind-address", ":8443", "Address of the device API.")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":9090", "Address of /metrics (and of /healthz and /readyz unless --health-probe-bind-address is set).")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", "", "Address of /healthz and /readyz over plain HTTP (empty: served on --metrics-bind-address). Probes never need a token.")
	fs.BoolVar(&o.metricsSecure, "metrics-secure", true, "Serve /metrics over HTTPS to callers the API server authenticates and authorizes for GET /metrics (TokenReview, SubjectAccessReview); false serves plain HTTP (local use only).")
	fs.StringVar(&o.metricsCertDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for --metrics-secure, reloaded when they change (empty: a self-signed certificate).")
	fs.StringVar(&o.tlsCert, "tls-cert-file", "", "PEM certificate (chain) of the device API.")
	fs.StringVar(&o.tlsKey, "tls-key-file", "", "PEM private key of the device API.")
	fs.BoolVar(&o.insecureHTTP, "insecure-http", false, "Serve the device API over plain HTTP (local use only).")
	fs.StringVar(&o.dataDir, "data-dir", "/var/lib/otaflow", "Data volume shared with the manager.")
	fs.StringVar(&o.blobDir, "blob-dir", "", "Encrypted blob store directory (default <data-dir>/blobs, as the manager writes it; ignored when --blob-store is set).")
	fs.StringVar(&o.blobStore, "blob-store", "", "Blob store URL, as the manager's: a directory (file:///path) or object storage (s3://bucket/prefix?endpoint=host:port&region=…; docs/object-storage.md). Empty: --blob-dir.")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "Run the reporter (fleet sync, cutoffs, offer expiry, counters, Rollout status) only on the replica holding the Lease otaflow-otaserver-reporter in --namespace; every replica serves devices, with cutoffs read from the shared store. Needed with more than one replica.")
	fs.StringVar(&o.leaderElectionID, "leader-election-identity", "", "This replica's name in the Lease (default: POD_NAME, else the host name).")
	fs.DurationVar(&o.cutoffsTTL, "cutoffs-ttl", 2*time.Second, "With --leader-elect: how long wave cutoffs read from the store are served before being read again (the staleness bound of a replica that is not the leader).")
	fs.DurationVar(&o.blobRedirectTTL, "blob-redirect-ttl", 0, "With object storage: answer authorized blob downloads with a redirect to a presigned URL valid this long (e.g. 2m) instead of proxying the bytes; 0 proxies.")
	fs.StringVar(&o.storeDSN, "store-dsn", "", "Device store: sqlite:///path/devices.db (default sqlite://<data-dir>/otaserver/devices.db); ?synchronous=NORMAL trades power-loss durability for speed.")
	fs.StringVar(&o.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "The server's own namespace (enrollment and signing-key Secrets).")
	fs.StringVar(&o.namespaces, "namespaces", "", "Comma-separated namespaces of Rollouts and releases to serve; empty serves all.")
	fs.StringVar(&o.enrollSecret, "enrollment-secret", "otaflow-enrollment-tokens", "With --cluster-wide-devices: Secret in --namespace whose data values are bootstrap tokens of cluster-wide devices.")
	fs.DurationVar(&o.enrollFailRate, "enroll-failure-rate", time.Minute, "A client address that presented unknown bootstrap tokens earns one more attempt per this interval.")
	fs.IntVar(&o.enrollFailBurst, "enroll-failure-burst", 10, "Unknown bootstrap tokens a client address (IPv6: its /64) may present before it is answered 429 until --enroll-failure-rate gives it another attempt.")
	fs.BoolVar(&o.clusterWideDevices, "cluster-wide-devices", false, "Single-team mode: devices may also enroll through --enrollment-secret, belong to no namespace, and every Rollout may select them (besides its own namespace's devices). Off, devices enroll only through DeviceEnrollments and a Rollout selects only devices of its namespace.")
	fs.StringVar(&o.signingSecret, "signing-key-secret", "otaflow-assignment-key", "Secret in --namespace holding the assignment signing keys (PEM, Ed25519 or ECDSA P-256, one per *.pem entry; with several, \"current\" names the signing key and \"serial\" versions the set), watched: a rotation needs no restart (docs/security.md).")
	fs.StringVar(&o.signField, "signing-key-secret-key", "key.pem", "A data key of --signing-key-secret that holds a key although its name does not end in .pem (older Secrets).")
	fs.StringVar(&o.signingKeyFile, "signing-key-file", "", "Read one signing key from this file at start instead of watching the Secret (no rotation without a restart).")
	fs.BoolVar(&o.ddi, "ddi", false, "Also serve the hawkBit DDI API v1 (SWUpdate suricatta, rauc-hawkbit-updater) on the device address: /{namespace}/controller/v1/{controllerId}; devices authenticate through DeviceEnrollments with spec.ddi (docs/hawkbit-ddi.md).")
	fs.StringVar(&o.ddiExternalURL, "ddi-external-url", "", "Base URL of the hrefs in DDI answers (default: --public-url, else each request's scheme and Host).")
	fs.DurationVar(&o.ddiPoll, "ddi-poll-interval", 5*time.Minute, "config.polling.sleep told to DDI clients with nothing to do.")
	fs.DurationVar(&o.ddiActivePoll, "ddi-active-poll-interval", 30*time.Second, "config.polling.sleep while a DDI action is open (clients see a cancel only when they poll).")
	fs.BoolVar(&o.mender, "mender", false, "Also serve the Mender device API (mender-client 3.x) on the device address: /api/devices/...; devices authenticate through DeviceEnrollments with spec.mender (docs/mender.md).")
	fs.StringVar(&o.menderExternalURL, "mender-external-url", "", "Base URL of Mender download links (default: --public-url, else each request's scheme and Host).")
	fs.StringVar(&o.menderTokenSecret, "mender-token-key-secret", "otaflow-mender-token-key", "Secret in --namespace holding the HMAC keys Mender device tokens and download links are signed with (entries of at least 32 bytes; with several, \"current\" names the signing one), watched.")
	fs.DurationVar(&o.menderTokenTTL, "mender-token-ttl", time.Hour, "How long a Mender device token is valid; the client authenticates again after it.")
	fs.DurationVar(&o.menderLinkTTL, "mender-link-ttl", 24*time.Hour, "How long a Mender download link is valid (a download resumed after it fails).")
	fs.DurationVar(&o.ddiAttributesRefresh, "ddi-attributes-refresh", time.Hour, "How often a DDI client is asked for its attributes (configData) again.")
	fs.StringVar(&o.deviceAPI.addr, "device-api-bind-address", "", "Serve the device API group devices.ota.otaflow.io (kubectl get devices) here for kube-apiserver's aggregation layer, e.g. :8444; empty: not served. Authentication and authorization are delegated to the API server (docs/kubectl.md).")
	fs.StringVar(&o.deviceAPI.certFile, "device-api-tls-cert-file", "", "PEM serving certificate of the device API group, reloaded when it changes (empty: self-signed, for an APIService with insecureSkipTLSVerify only).")
	fs.StringVar(&o.deviceAPI.keyFile, "device-api-tls-key-file", "", "PEM private key of --device-api-tls-cert-file.")
	fs.StringVar(&o.publicURL, "public-url", "", "Base URL devices reach the API at, used in blob URLs (default: from each request's Host).")
	fs.DurationVar(&o.reportInterval, "report-interval", 2*time.Second, "How often counters are computed and Rollout status is applied.")
	fs.DurationVar(&o.statusHeartbeat, "status-heartbeat", 30*time.Second, "Rollout status is applied at least this often, changed or not, so status.fleet.reportedAt shows the server is reporting (keep it well under the manager's --counts-stale-after).")
	fs.DurationVar(&o.assignmentTTL, "assignment-ttl", time.Hour, "Validity of a signed assignment.")
	fs.Float64Var(&o.deviceRate, "device-rate", 1, "Update checks and reports per second per device (sustained).")
	fs.IntVar(&o.deviceBurst, "device-burst", 10, "Burst of update checks and reports per device.")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 20*time.Second, "Time for in-flight requests on shutdown.")
	fs.Float64Var(&o.memoryLimitRatio, "memory-limit-ratio", 0.8, "Go soft memory limit as a fraction of the container's memory limit (cgroup), unless GOMEMLIMIT is set.")
	o.httpLimits = otaserver.DefaultHTTPLimits()
	fs.IntVar(&o.httpLimits.MaxConnections, "max-connections", o.httpLimits.MaxConnections, "Device API connections served at once; more wait in the accept queue (0: no limit).")
	fs.DurationVar(&o.httpLimits.ReadHeaderTimeout, "read-header-timeout", o.httpLimits.ReadHeaderTimeout, "Close device connections whose request headers take longer (also silent new connections).")
	fs.DurationVar(&o.httpLimits.ReadTimeout, "read-timeout", o.httpLimits.ReadTimeout, "Close device connections whose whole request (body included) takes longer.")
	fs.DurationVar(&o.httpLimits.IdleTimeout, "idle-timeout", o.httpLimits.IdleTimeout, "Close idle keep-alive device connections after this long.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	flag.Parse()
	if err := envDefaults(fs, os.LookupEnv); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := run(ctrl.SetupSignalHandler(), o); err != nil {
		ctrl.Log.Error(err, "otaserver failed")
		os.Exit(1)
	}
}

// envDefaults sets flags not given on the command line from
// OTASERVER_<NAME> environment variables.
func envDefaults(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "OTASERVER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	return errors.Join(errs...)
}

func (o *options) validate() error {
	switch {
	case o.insecureHTTP && (o.tlsCert != "" || o.tlsKey != ""):
		return errors.New("--insecure-http and --tls-cert-file/--tls-key-file exclude each other")
	case !o.insecureHTTP && (o.tlsCert == "" || o.tlsKey == ""):
		return errors.New("--tls-cert-file and --tls-key-file are required (or --insecure-http for local use)")
	case o.namespace == "" && o.signingKeyFile == "":
		return errors.New("--namespace (or POD_NAMESPACE) is required to read the signing-key Secret")
	case o.namespace == "":
		return errors.New("--namespace (or POD_NAMESPACE) is required to watch the enrollment Secret")
	case o.reportInterval < 100*time.Millisecond:
		return errors.New("--report-interval must be at least 100ms")
	case o.statusHeartbeat < o.reportInterval:
		return errors.New("--status-heartbeat must be at least --report-interval")
	case o.assignmentTTL < time.Minute:
		return errors.New("--assignment-ttl must be at least 1m")
	case o.deviceRate <= 0 || o.deviceBurst < 1:
		return errors.New("--device-rate must be positive and --device-burst at least 1")
	}
	if o.leaderElect && o.leaderElectionID == "" {
		o.leaderElectionID = os.Getenv("POD_NAME")
		if o.leaderElectionID == "" {
			h, err := os.Hostname()
			if err != nil {
				return fmt.Errorf("--leader-election-identity: %w", err)
			}
			o.leaderElectionID = h
		}
	}
	if o.leaderElect && o.cutoffsTTL < 100*time.Millisecond {
		return errors.New("--cutoffs-ttl must be at least 100ms")
	}
	if o.blobRedirectTTL < 0 || (o.blobRedirectTTL > 0 && o.blobRedirectTTL < time.Second) {
		return errors.New("--blob-redirect-ttl must be 0 or at least 1s")
	}
	if o.blobDir == "" {
		o.blobDir = o.dataDir + "/blobs"
	}
	if o.blobStore == "" {
		o.blobStore = o.blobDir
	}
	if o.storeDSN == "" {
		o.storeDSN = "sqlite://" + o.dataDir + "/otaserver/devices.db"
	}
	return nil
}
