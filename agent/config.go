package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/otaflow/otaflow/internal/vendorsig"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
)

// Config configures an Agent. ServerURL, DeviceID, DeviceType,
// BootstrapToken, AssignmentKeyPEM, Store and Installer are required; so
// are VendorKeysPEM unless AllowUnsigned is set.
type Config struct {
	// ServerURL is the OTA server's base URL, e.g. https://ota.example.com.
	ServerURL string
	// DeviceID is 1–128 of A-Z a-z 0-9 . _ : - and stable for the device's life.
	DeviceID string
	// DeviceType must match a release's compatibility.deviceTypes.
	DeviceType string
	// Labels are matched by rollout selectors. A change re-enrolls.
	Labels map[string]string
	// BootstrapToken is the enrollment token provisioned at manufacturing.
	BootstrapToken string
	// KEM is the device key type: keywrap.X25519 (default) or keywrap.P256.
	// It applies when the device key is generated; a stored key keeps its KEM.
	KEM keywrap.KEM

	// AssignmentKeyPEM is the OTA server's assignment-signing public key,
	// or a bundle of several (PKIX PEM blocks, Ed25519 or ECDSA P-256).
	// They are the keys the device trusts at first start; from then on it
	// follows the server's signed key set (GET /v1/keys) and keeps what it
	// trusts in its state. Provisioning other keys here replaces the
	// trusted keys at the next start (docs/security.md, recovery).
	AssignmentKeyPEM []byte
	// KeyCheckInterval is how often the agent compares the keys it trusts
	// with those the server announces (GET /v1/info) and, when they
	// differ, follows the server's signed key set; default 1 h. An
	// assignment (or an enrollment answer) naming a key it does not trust
	// makes it look at once.
	KeyCheckInterval time.Duration
	// VendorKeysPEM are the trusted firmware vendor public keys (PEM, one
	// key each; ECDSA, Ed25519 or RSA). A signature by any one is enough.
	VendorKeysPEM [][]byte
	// AllowUnsigned accepts assignments whose vendorSignature is empty.
	// Off by default: an unsigned image is refused.
	AllowUnsigned bool

	// HTTPClient sends every request. Share one (and its Transport) across
	// agents in one process. Default: a client with a 60 s timeout on
	// everything except blob bodies, which are bounded by IdleTimeout.
	HTTPClient *http.Client
	// RequestTimeout bounds API requests (not blob downloads); default 30 s.
	RequestTimeout time.Duration
	// IdleTimeout aborts a blob download that receives nothing for this
	// long; default 60 s. Progress is kept.
	IdleTimeout time.Duration

	// PollInterval is the time between update checks; default 5 min.
	PollInterval time.Duration
	// PollJitter spreads polls by ± this fraction of PollInterval; default 0.2.
	PollJitter float64
	// Backoff paces retries after 429, 5xx and network errors.
	Backoff Backoff
	// CheckpointBytes is how much verified plaintext may be staged between
	// two durable checkpoints (staging fsync + state save): at most this
	// much is downloaded again after a power cut. Default 256 KiB.
	CheckpointBytes int64
	// ProgressInterval is the minimum time between "downloading" progress
	// reports; default 10 s.
	ProgressInterval time.Duration

	// ClockSkew is the allowed difference between the device's and the
	// server's clocks when checking an assignment's validity; default 5 min.
	ClockSkew time.Duration
	// Clock returns the time; default time.Now.
	Clock func() time.Time
	// BootID identifies the current boot. After "installed" the agent waits
	// for a new boot ID before it judges the running version. Default: the
	// Linux kernel's boot_id, or a random ID per Agent where there is none.
	BootID func() string

	// Store keeps the agent's state across restarts.
	Store StateStore
	// Staging receives verified plaintext while it downloads; default
	// DiscardStaging (installers that need the image need a FileStaging).
	Staging Staging
	// Installer writes verified images and reports the running version.
	Installer Installer
	// Reboot restarts the device into the newly installed image. When nil
	// the agent only logs that a reboot is needed and waits for one.
	Reboot func(ctx context.Context) error

	// Version is the running firmware version when neither the installer
	// nor the state knows it (first start).
	Version string
	// SecurityFloor is the anti-rollback floor at first start. A persisted
	// floor is never lowered by this.
	SecurityFloor int64

	// Log receives the agent's logs; default discard.
	Log logr.Logger
	// OnEvent, when set, is called synchronously for every state change,
	// refusal and report (see Event). It must not block.
	OnEvent func(Event)
}

// Backoff paces retries: Initial, then doubled up to Max, each delay drawn
// uniformly from [d/2, d] ("equal jitter"). A Retry-After from the server is
// a lower bound.
type Backoff struct {
	Initial time.Duration // default 1 s
	Max     time.Duration // default 5 min
}

// parsed is what New derives from a Config.
type parsed struct {
	base *url.URL
	// trust holds the provisioned assignment keys (serial 0);
	// provisioned fingerprints them.
	trust       *assignment.Trust
	provisioned string
	vendor      []vendorsig.Key
}

func (c *Config) setDefaults() {
	if c.KEM == "" {
		c.KEM = keywrap.X25519
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 5 * time.Minute
	}
	if c.PollJitter <= 0 || c.PollJitter >= 1 {
		c.PollJitter = 0.2
	}
	if c.Backoff.Initial <= 0 {
		c.Backoff.Initial = time.Second
	}
	if c.Backoff.Max <= 0 {
		c.Backoff.Max = 5 * time.Minute
	}
	if c.Backoff.Max < c.Backoff.Initial {
		c.Backoff.Max = c.Backoff.Initial
	}
	if c.CheckpointBytes <= 0 {
		c.CheckpointBytes = 256 << 10
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = 10 * time.Second
	}
	if c.KeyCheckInterval <= 0 {
		c.KeyCheckInterval = time.Hour
	}
	if c.ClockSkew <= 0 {
		c.ClockSkew = 5 * time.Minute
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.BootID == nil {
		c.BootID = defaultBootID()
	}
	if c.Staging == nil {
		c.Staging = DiscardStaging{}
	}
	if c.Log.GetSink() == nil {
		c.Log = logr.Discard()
	}
}

func (c *Config) parse() (parsed, error) {
	var p parsed
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	u, err := url.Parse(strings.TrimRight(c.ServerURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("ServerURL %q is not an absolute http(s) URL", c.ServerURL)
	}
	p.base = u
	if !validID(c.DeviceID, 128) {
		bad("DeviceID %q: 1–128 of A-Z a-z 0-9 . _ : -", c.DeviceID)
	}
	if !validID(c.DeviceType, 63) {
		bad("DeviceType %q: 1–63 of A-Z a-z 0-9 . _ : -", c.DeviceType)
	}
	if c.BootstrapToken == "" || len(c.BootstrapToken) > 512 {
		bad("BootstrapToken: 1–512 characters required")
	}
	if _, err := keywrap.ParseKEM(string(c.KEM)); err != nil {
		bad("KEM: %v", err)
	}
	if c.SecurityFloor < 0 || c.SecurityFloor > 1<<32-1 {
		bad("SecurityFloor %d: must be 0..4294967295", c.SecurityFloor)
	}
	if len(c.AssignmentKeyPEM) == 0 {
		bad("AssignmentKeyPEM is required")
	} else if pubs, err := assignment.ParsePublicKeysPEM(c.AssignmentKeyPEM); err != nil {
		bad("AssignmentKeyPEM: %v", err)
	} else if len(pubs) > assignment.MaxKeySetKeys {
		bad("AssignmentKeyPEM: %d keys, at most %d", len(pubs), assignment.MaxKeySetKeys)
	} else if p.trust, err = assignment.TrustKeys(pubs...); err != nil {
		bad("AssignmentKeyPEM: %v", err)
	} else {
		p.provisioned = strings.Join(p.trust.KeyIDs(), ",")
	}
	for i, k := range c.VendorKeysPEM {
		key, err := vendorsig.ParsePublicKey(fmt.Sprintf("vendor key %d", i+1), k)
		if err != nil {
			bad("VendorKeysPEM[%d]: %v", i, err)
			continue
		}
		p.vendor = append(p.vendor, key)
	}
	if len(c.VendorKeysPEM) == 0 && !c.AllowUnsigned {
		bad("VendorKeysPEM: at least one trusted vendor key is required (or set AllowUnsigned)")
	}
	if c.Store == nil {
		bad("Store is required")
	}
	if c.Installer == nil {
		bad("Installer is required")
	}
	return p, errors.Join(errs...)
}

func validID(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
