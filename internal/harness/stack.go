package harness

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	_ "modernc.org/sqlite" // OpenStoreReadOnly
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// StackOptions configure a Stack.
type StackOptions struct {
	// Dir holds logs, the kubeconfig, keys and the data volume.
	Dir string
	// BinDir holds the manager, otaserver and fleetsim binaries.
	BinDir string
	// Namespace is the operator's own namespace (enrollment tokens).
	Namespace string
	// ReportInterval of the OTA server's status reporter.
	ReportInterval time.Duration
	// LeaderElect runs the manager with leader election (a Lease in
	// Namespace), as a replicated deployment does.
	LeaderElect bool
	// StatusHeartbeat is the OTA server's --status-heartbeat (status is
	// applied at least this often); 0 keeps its default (30s).
	StatusHeartbeat time.Duration
	// CountsStaleAfter is the manager's --counts-stale-after; 0 keeps its
	// default (2m). Keep it well above StatusHeartbeat.
	CountsStaleAfter time.Duration
	// OTAServers is the number of OTA server replicas (0 means 1). With
	// more than one they run as a scaled Deployment's replicas do: with
	// --leader-elect (the Lease otaflow-otaserver-reporter in Namespace)
	// and identities otaserver-0, otaserver-1, …, each on its own ports;
	// they need a shared StoreDSN.
	OTAServers int
	// StoreDSN is the OTA servers' --store-dsn; empty: SQLite in the data
	// directory (StorePath).
	StoreDSN string
	// BlobStore is the --blob-store of the manager and the OTA servers;
	// empty: the data directory.
	BlobStore string
	// Env is added to the environment of the manager and the OTA servers
	// (object storage credentials).
	Env []string
	// Tenants runs the OTA servers in the namespaced mode: devices enroll
	// only through DeviceEnrollments (CreateDeviceEnrollment) and each
	// Rollout selects its namespace's devices. Off, they run with
	// --cluster-wide-devices and BootstrapToken enrolls devices every
	// namespace's rollouts may select (one team).
	Tenants bool
	// DDI serves the hawkBit DDI API too (--ddi), telling clients to poll
	// every DDIPoll (0: 1s) with or without an open action.
	DDI     bool
	DDIPoll time.Duration
	// Mender serves the Mender device API too (--mender), its token key
	// Secret created in Namespace.
	Mender bool
	// DeviceAPI serves the device API group (devices.ota.otaflow.io) from
	// the first OTA server through the aggregation layer, so kubectl get
	// devices works against the control plane.
	DeviceAPI bool
	// SigningKeySecret puts the assignment signing key in the Secret
	// AssignmentKeySecret in Namespace (as key.pem, a set of one at serial
	// 1) and runs the OTA servers without --signing-key-file, so they
	// watch it, as in a cluster, and a test can rotate the key
	// (SetSigningKeys). Off, they read the key from a file at start.
	SigningKeySecret bool
	// DeviceTLS serves the device API over TLS, as in a cluster: a CA
	// (Stack.DeviceCAFile) issues a serving certificate for localhost
	// (DeviceTLSHost), the OTA servers run with --tls-cert-file and
	// --tls-key-file instead of --insecure-http, and their URLs (and
	// --public-url) are https://localhost:<port>, still bound to
	// 127.0.0.1. Clients trust the CA: DeviceTransport for Go, --ca-file
	// for the C client. StartFleet refuses to run with it (fleetsim is
	// given no CA and would refuse the certificate).
	DeviceTLS bool
}

// ReporterLease is the Lease the OTA server replicas elect their reporter
// with (in StackOptions.Namespace).
const ReporterLease = "otaflow-otaserver-reporter"

// Replica is one OTA server process.
type Replica struct {
	// Identity is its --leader-election-identity (with several replicas).
	Identity string
	Process  *Process
	// URL is its device API, Ready its readiness endpoint.
	URL, Ready string
}

// MetricsURL is the replica's Prometheus endpoint.
func (r *Replica) MetricsURL() string { return strings.TrimSuffix(r.Ready, "/readyz") + "/metrics" }

// Wait waits until the replica is ready (after a restart too).
func (r *Replica) Wait(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := r.Process.WaitHTTP(wctx, r.Ready); err != nil {
		return fmt.Errorf("OTA server %s not ready (log: %s): %w", r.Process.Name(), r.Process.LogPath(), err)
	}
	return nil
}

// Stack is otaflow running as in a cluster: control plane, the manager and
// the OTA server as separate processes sharing a data directory, a vendor
// with a signing key and a download site.
type Stack struct {
	Opts    StackOptions
	CP      *ControlPlane
	Manager *Process
	// Replicas are the OTA server replicas (StackOptions.OTAServers);
	// OTAServer, ServerURL and ServerReady are the first one's.
	Replicas  []*Replica
	OTAServer *Process
	// ServerURL is the OTA server's device API.
	ServerURL string
	// ServerReady is its readiness endpoint; ManagerReady the manager's.
	ServerReady, ManagerReady string
	Images                    *FileServer
	Vendor                    *Vendor
	// BootstrapToken enrolls devices.
	BootstrapToken string
	// AssignmentKeyFile is the OTA server's public key devices trust;
	// VendorKeyFile the vendor's.
	AssignmentKeyFile, VendorKeyFile string
	// AssignmentKeyPEM is the initial assignment signing key (PKCS#8 PEM,
	// Ed25519), for a test that rotates it (StackOptions.SigningKeySecret,
	// SetSigningKeys).
	AssignmentKeyPEM []byte
	// With StackOptions.DeviceTLS: DeviceCAFile holds the CA (PEM,
	// DeviceCAPEM) that issued the device API's serving certificate
	// DeviceCertFile (key DeviceKeyFile), for localhost.
	DeviceCAFile                  string
	DeviceCAPEM                   []byte
	DeviceCertFile, DeviceKeyFile string
}

// quietControllerRuntime gives controller-runtime's logger, which envtest
// and the control plane's client log through, somewhere to go before the
// first control plane starts: unset, it prints a warning with a stack trace
// when first used 30s or more after the program started. The stack's
// processes log to their own files; a program that wants controller-runtime's
// logs sets its logger before StartStack (the first one set stays).
var quietControllerRuntime sync.Once

// StartStack starts everything and waits until both processes are ready.
func StartStack(ctx context.Context, o StackOptions) (s *Stack, err error) {
	if o.Namespace == "" {
		o.Namespace = "otaflow-system"
	}
	if o.ReportInterval == 0 {
		o.ReportInterval = time.Second
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	s = &Stack{Opts: o}
	started := s // the error returns below set s to nil
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	quietControllerRuntime.Do(func() { ctrllog.SetLogger(logr.Discard()) })
	if s.CP, err = StartControlPlane(o.Dir); err != nil {
		return nil, err
	}
	if s.Images, err = StartFileServer(); err != nil {
		return nil, err
	}
	if s.Vendor, err = NewVendor(); err != nil {
		return nil, err
	}
	s.VendorKeyFile = filepath.Join(o.Dir, "vendor.pub")
	if err := os.WriteFile(s.VendorKeyFile, s.Vendor.PublicPEM, 0o644); err != nil {
		return nil, err
	}
	signingKey, err := s.writeAssignmentKeys()
	if err != nil {
		return nil, err
	}
	if o.DeviceTLS {
		if err := s.writeDeviceTLS(); err != nil {
			return nil, err
		}
	}
	if err := s.createOperatorNamespace(ctx); err != nil {
		return nil, err
	}
	if o.SigningKeySecret {
		// The servers watch the Secret instead of reading the file.
		if err := s.createSigningKeySecret(ctx); err != nil {
			return nil, err
		}
		signingKey = ""
	}
	if err := s.startManager(ctx); err != nil {
		return nil, err
	}
	for i := range max(o.OTAServers, 1) {
		if err := s.startOTAServer(ctx, i, signingKey); err != nil {
			return nil, err
		}
	}
	first := s.Replicas[0]
	s.OTAServer, s.ServerURL, s.ServerReady = first.Process, first.URL, first.Ready
	return s, nil
}

// writeAssignmentKeys makes the OTA server's assignment signing key.
func (s *Stack) writeAssignmentKeys() (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	privPEM, err := assignment.MarshalPrivateKeyPEM(priv)
	if err != nil {
		return "", err
	}
	s.AssignmentKeyPEM = privPEM
	pubPEM, err := assignment.MarshalPublicKeyPEM(priv.Public())
	if err != nil {
		return "", err
	}
	keyFile := filepath.Join(s.Opts.Dir, "assignment-key.pem")
	if err := os.WriteFile(keyFile, privPEM, 0o600); err != nil {
		return "", err
	}
	s.AssignmentKeyFile = filepath.Join(s.Opts.Dir, "assignment-key.pub")
	return keyFile, os.WriteFile(s.AssignmentKeyFile, pubPEM, 0o644)
}

func (s *Stack) createOperatorNamespace(ctx context.Context) error {
	ns := s.Opts.Namespace
	if err := s.CP.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	s.BootstrapToken = fmt.Sprintf("factory-%x", tok)
	if s.Opts.Mender {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		mk := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "otaflow-mender-token-key"},
			Data:       map[string][]byte{"key-1": key},
		}
		if err := s.CP.Client.Create(ctx, mk); err != nil {
			return fmt.Errorf("create Mender token key Secret: %w", err)
		}
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "otaflow-enrollment-tokens"},
		StringData: map[string]string{"factory": s.BootstrapToken},
	}
	if err := s.CP.Client.Create(ctx, sec); err != nil {
		return fmt.Errorf("create enrollment Secret: %w", err)
	}
	return nil
}

func (s *Stack) dataDir() string { return filepath.Join(s.Opts.Dir, "data") }

func (s *Stack) startManager(ctx context.Context) error {
	probe, err := FreePort()
	if err != nil {
		return err
	}
	s.Manager, err = StartProcess(ProcessSpec{
		Name: "manager",
		Path: filepath.Join(s.Opts.BinDir, "manager"),
		Args: append([]string{
			s.blobArg(),
			"--metrics-bind-address=0",
			fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probe),
			"--retry-base-delay=500ms",
			"--retry-max-delay=5s",
			ManagerEgressAllow,
		}, append(s.leaderArgs(), s.staleArgs()...)...),
		Env:     append([]string{"KUBECONFIG=" + s.CP.Kubeconfig}, s.Opts.Env...),
		LogPath: filepath.Join(s.Opts.Dir, "manager.log"),
	})
	if err != nil {
		return err
	}
	s.ManagerReady = fmt.Sprintf("http://127.0.0.1:%d/readyz", probe)
	return s.WaitManager(ctx)
}

// blobArg is the manager's blob store flag.
func (s *Stack) blobArg() string {
	if s.Opts.BlobStore != "" {
		return "--blob-store=" + s.Opts.BlobStore
	}
	return "--blob-dir=" + filepath.Join(s.dataDir(), "blobs")
}

func (s *Stack) staleArgs() []string {
	if s.Opts.CountsStaleAfter <= 0 {
		return nil
	}
	return []string{"--counts-stale-after=" + s.Opts.CountsStaleAfter.String()}
}

func (s *Stack) leaderArgs() []string {
	if !s.Opts.LeaderElect {
		return nil
	}
	return []string{"--leader-elect", "--leader-election-namespace=" + s.Opts.Namespace}
}

// WaitManager waits until the manager is ready (after a restart too).
func (s *Stack) WaitManager(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := s.Manager.WaitHTTP(wctx, s.ManagerReady); err != nil {
		return fmt.Errorf("manager not ready (log: %s): %w", s.Manager.LogPath(), err)
	}
	return nil
}

// StorePath is the OTA server's SQLite device store.
func (s *Stack) StorePath() string { return filepath.Join(s.dataDir(), "otaserver", "devices.db") }

// OpenStoreReadOnly opens the OTA server's SQLite store (StorePath) read
// only, waiting up to 10s for the server's write locks, for a test to look
// at what the server recorded. It needs the default store (no StoreDSN).
func (s *Stack) OpenStoreReadOnly() (*sql.DB, error) {
	if s.Opts.StoreDSN != "" {
		return nil, fmt.Errorf("OpenStoreReadOnly: the OTA servers use --store-dsn, not SQLite in the data directory")
	}
	return sql.Open("sqlite", "file:"+s.StorePath()+"?mode=ro&_pragma=busy_timeout(10000)")
}

// MetricsURL is the OTA server's Prometheus endpoint.
func (s *Stack) MetricsURL() string { return strings.TrimSuffix(s.ServerReady, "/readyz") + "/metrics" }

// startOTAServer starts replica i and waits until it is ready. With no
// signingKeyFile it watches the signing-key Secret.
func (s *Stack) startOTAServer(ctx context.Context, i int, signingKeyFile string) error {
	devPort, err := FreePort()
	if err != nil {
		return err
	}
	metricsPort, err := FreePort()
	if err != nil {
		return err
	}
	r := &Replica{
		URL:   s.deviceURL(devPort),
		Ready: fmt.Sprintf("http://127.0.0.1:%d/readyz", metricsPort),
	}
	var extra []string
	if signingKeyFile != "" {
		extra = append(extra, "--signing-key-file="+signingKeyFile)
	}
	if s.Opts.StatusHeartbeat > 0 {
		extra = append(extra, "--status-heartbeat="+s.Opts.StatusHeartbeat.String())
	}
	if s.Opts.StoreDSN != "" {
		extra = append(extra, "--store-dsn="+s.Opts.StoreDSN)
	}
	if s.Opts.BlobStore != "" {
		extra = append(extra, "--blob-store="+s.Opts.BlobStore)
	}
	// One replica keeps the single-server layout (and its file names).
	name, logName := "otaserver", "otaserver.log"
	if s.Opts.OTAServers > 1 {
		r.Identity = fmt.Sprintf("otaserver-%d", i)
		name, logName = r.Identity, r.Identity+".log"
		extra = append(extra, "--leader-elect", "--leader-election-identity="+r.Identity)
	}
	if s.Opts.DDI {
		poll := cmp.Or(s.Opts.DDIPoll, time.Second)
		extra = append(extra, "--ddi", "--ddi-poll-interval="+poll.String(), "--ddi-active-poll-interval="+poll.String())
	}
	if s.Opts.Mender {
		extra = append(extra, "--mender")
	}
	var deviceAPIPort int
	var deviceAPICA []byte
	if s.Opts.DeviceAPI && i == 0 {
		if deviceAPIPort, err = FreePort(); err != nil {
			return err
		}
		var serving tlsPair
		if serving, deviceAPICA, err = deviceAPIServing(s.Opts.Dir, s.Opts.Namespace); err != nil {
			return err
		}
		extra = append(extra, fmt.Sprintf("--device-api-bind-address=127.0.0.1:%d", deviceAPIPort),
			"--device-api-tls-cert-file="+serving.Cert, "--device-api-tls-key-file="+serving.Key)
	}
	if !s.Opts.Tenants {
		// One team: devices enroll through the operator namespace's
		// Secret and every namespace's rollouts may select them.
		extra = append(extra, "--cluster-wide-devices")
	}
	args := append(s.deviceTLSArgs(), []string{
		fmt.Sprintf("--device-bind-address=127.0.0.1:%d", devPort),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort),
		"--metrics-secure=false", // loopback only
		"--public-url=" + r.URL,
		"--data-dir=" + s.dataDir(),
		"--namespace=" + s.Opts.Namespace,
		"--report-interval=" + s.Opts.ReportInterval.String(),
		"--device-rate=5",
		"--device-burst=20",
	}...)
	r.Process, err = StartProcess(ProcessSpec{
		Name:    name,
		Path:    filepath.Join(s.Opts.BinDir, "otaserver"),
		Args:    append(args, extra...),
		Env:     append([]string{"KUBECONFIG=" + s.CP.Kubeconfig}, s.Opts.Env...),
		LogPath: filepath.Join(s.Opts.Dir, logName),
	})
	if err != nil {
		return err
	}
	s.Replicas = append(s.Replicas, r)
	if err := r.Wait(ctx); err != nil {
		return err
	}
	if deviceAPIPort != 0 {
		return s.registerDeviceAPI(ctx, deviceAPIPort, deviceAPICA)
	}
	return nil
}

// WaitOTAServer waits until the (first) OTA server is ready (after a
// restart too).
func (s *Stack) WaitOTAServer(ctx context.Context) error {
	return s.Replicas[0].Wait(ctx)
}

// ServerURLs are the device APIs of every replica, in order.
func (s *Stack) ServerURLs() []string {
	urls := make([]string, len(s.Replicas))
	for i, r := range s.Replicas {
		urls[i] = r.URL
	}
	return urls
}

// Stop stops every process and the control plane.
func (s *Stack) Stop() {
	for _, r := range s.Replicas {
		_ = r.Process.Stop(15 * time.Second)
	}
	if s.Manager != nil {
		_ = s.Manager.Stop(15 * time.Second)
	}
	if s.Images != nil {
		_ = s.Images.Close()
	}
	if s.CP != nil {
		_ = s.CP.Stop()
	}
}

// CreateDeviceEnrollment creates a DeviceEnrollment in namespace ns with a
// fresh token in its Secret (as a platform team does with openssl rand),
// and returns the token. maxDevices 0 leaves it uncapped.
func (s *Stack) CreateDeviceEnrollment(ctx context.Context, ns, name string, maxDevices int64) (string, error) {
	return s.CreateDeviceEnrollmentWith(ctx, ns, name, func(e *otav1.DeviceEnrollment) {
		if maxDevices > 0 {
			e.Spec.MaxDevices = &maxDevices
		}
	})
}

// CreateDeviceEnrollmentWith is CreateDeviceEnrollment with the object
// changed by mutate before it is applied.
func (s *Stack) CreateDeviceEnrollmentWith(ctx context.Context, ns, name string, mutate func(*otav1.DeviceEnrollment)) (string, error) {
	tok, err := RandomToken()
	if err != nil {
		return "", err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-token"},
		Data:       map[string][]byte{otav1.DefaultEnrollmentTokenKey: []byte(tok)},
	}
	if err := s.CP.Client.Create(ctx, sec); err != nil {
		return "", fmt.Errorf("create enrollment token Secret: %w", err)
	}
	e := &otav1.DeviceEnrollment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       otav1.DeviceEnrollmentSpec{TokenSecretRef: otav1.TokenSecretReference{Name: sec.Name}},
	}
	if mutate != nil {
		mutate(e)
	}
	if err := s.CP.Client.Create(ctx, e); err != nil {
		return "", fmt.Errorf("create DeviceEnrollment: %w", err)
	}
	return tok, nil
}

// RandomToken is a fresh token as a platform team makes one (openssl
// rand -base64 32).
func RandomToken() (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}
