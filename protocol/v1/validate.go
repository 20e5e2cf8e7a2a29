package v1

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/otaflow/otaflow/protocol/v1/assignment"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
)

// Field limits of protocol v1.
const (
	MaxIDLen          = 128
	MaxVersionLen     = 128
	MaxDeviceTypeLen  = 63
	MaxLabels         = 32
	MaxReasonLen      = 512
	MaxReportIDLen    = 64
	MaxRolloutLen     = 317 // namespace (63) + "/" + name (253)
	MaxBootstrapToken = 512
	MaxTokenLen       = 512 // bearer tokens the server issues
	MaxSecurityFloor  = assignment.MaxSecurityVersion
)

func validID(s string, maxLen int) error {
	if s == "" || len(s) > maxLen {
		return fmt.Errorf("must be 1 to %d characters", maxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:-", c) >= 0) {
			return fmt.Errorf("may only contain letters, digits and . _ : -")
		}
	}
	return nil
}

// ValidateDeviceID checks a device ID: 1 to 128 characters, letters,
// digits and . _ : - (also the rule for hawkBit DDI controllerIds).
func ValidateDeviceID(s string) error { return validID(s, MaxIDLen) }

// ValidateVersion checks a running version as devices report it: 1 to
// MaxVersionLen printable ASCII characters without spaces (also the rule
// for the "version" attribute of hawkBit DDI clients).
func ValidateVersion(s string) error { return validVersion(s) }

func validVersion(s string) error {
	if s == "" || len(s) > MaxVersionLen {
		return fmt.Errorf("must be 1 to %d characters", MaxVersionLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("must be printable ASCII without spaces")
		}
	}
	return nil
}

func validDeviceType(s string) error {
	return validID(s, MaxDeviceTypeLen)
}

func validLabels(l map[string]string) error {
	if len(l) > MaxLabels {
		return fmt.Errorf("at most %d labels", MaxLabels)
	}
	for k, v := range l {
		if err := validLabelKey(k); err != nil {
			return fmt.Errorf("label key %q: %w", k, err)
		}
		if err := validLabelValue(v); err != nil {
			return fmt.Errorf("label %q value: %w", k, err)
		}
	}
	return nil
}

// validNonce: 16 to 128 hex characters, even length (assignment rules).
func validNonce(s string) error {
	if len(s) < 16 || len(s) > 128 || len(s)%2 != 0 {
		return fmt.Errorf("must be 16 to 128 hex characters")
	}
	if _, err := hex.DecodeString(s); err != nil {
		return fmt.Errorf("must be hex")
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// Kubernetes label syntax, written out here so that the protocol package
// (and device code importing it) needs nothing beyond the standard library;
// a differential test holds it to k8s.io/apimachinery's validation.
var (
	labelName   = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	dns1123Part = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// validLabelKey: [prefix/]name, prefix a DNS subdomain of at most 253
// characters, name at most 63 characters of the label-name syntax.
func validLabelKey(k string) error {
	name := k
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		prefix := k[:i]
		name = k[i+1:]
		if prefix == "" || len(prefix) > 253 {
			return errors.New("prefix must be a DNS subdomain of 1 to 253 characters")
		}
		for _, part := range strings.Split(prefix, ".") {
			if !dns1123Part.MatchString(part) {
				return errors.New("prefix must be a lowercase DNS subdomain")
			}
		}
	}
	if name == "" || len(name) > 63 {
		return errors.New("name must be 1 to 63 characters")
	}
	if !labelName.MatchString(name) {
		return errors.New("name must start and end with a letter or digit and contain only letters, digits, '-', '_' and '.'")
	}
	return nil
}

// validLabelValue: empty, or at most 63 characters of the label-name syntax.
func validLabelValue(v string) error {
	if v == "" {
		return nil
	}
	if len(v) > 63 {
		return errors.New("must be at most 63 characters")
	}
	if !labelName.MatchString(v) {
		return errors.New("must start and end with a letter or digit and contain only letters, digits, '-', '_' and '.'")
	}
	return nil
}

// Validate checks an enrollment request and returns the decoded public key.
func (e *EnrollRequest) Validate() ([]byte, error) {
	if err := validID(e.DeviceID, MaxIDLen); err != nil {
		return nil, fmt.Errorf("deviceID: %w", err)
	}
	if e.BootstrapToken == "" || len(e.BootstrapToken) > MaxBootstrapToken {
		return nil, fmt.Errorf("bootstrapToken: must be 1 to %d characters", MaxBootstrapToken)
	}
	kem, err := keywrap.ParseKEM(e.KEM)
	if err != nil {
		return nil, fmt.Errorf("kem: want %q or %q", keywrap.X25519, keywrap.P256)
	}
	pub, err := base64.StdEncoding.Strict().DecodeString(e.PublicKey)
	if err != nil {
		return nil, errors.New("publicKey: not standard base64")
	}
	if _, err := keywrap.ParsePublicKey(kem, pub); err != nil {
		return nil, fmt.Errorf("publicKey: %w", err)
	}
	if err := validDeviceType(e.DeviceType); err != nil {
		return nil, fmt.Errorf("deviceType: %w", err)
	}
	if err := validLabels(e.Labels); err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	if err := validVersion(e.Version); err != nil {
		return nil, fmt.Errorf("version: %w", err)
	}
	if e.SecurityFloor < 0 || e.SecurityFloor > MaxSecurityFloor {
		return nil, fmt.Errorf("securityFloor: must be 0 to %d", int64(MaxSecurityFloor))
	}
	return pub, nil
}

// Validate checks a status report's fields.
func (s *StatusReport) Validate() error {
	if err := validID(s.ReportID, MaxReportIDLen); err != nil {
		return fmt.Errorf("reportID: %w", err)
	}
	if s.Rollout == "" || len(s.Rollout) > MaxRolloutLen {
		return errors.New("rollout: must be namespace/name")
	}
	if !slices.Contains(Reportable, s.State) {
		return fmt.Errorf("state: %q is not one of %v", s.State, Reportable)
	}
	if s.Progress != nil && (*s.Progress < 0 || *s.Progress > 100) {
		return errors.New("progress: must be 0 to 100")
	}
	if len(s.Reason) > MaxReasonLen || !printable(s.Reason) {
		return fmt.Errorf("reason: at most %d printable characters", MaxReasonLen)
	}
	if s.State == StateFailed && s.Reason == "" {
		return errors.New("reason: required when state is failed")
	}
	return nil
}
