package otaserver

import (
	"encoding/hex"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Field limits of protocol v1.
const (
	maxIDLen      = 128
	maxVersionLen = 128
	maxLabels     = 32
	maxReasonLen  = 512
	maxReportID   = 64
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

func validVersion(s string) error {
	if s == "" || len(s) > maxVersionLen {
		return fmt.Errorf("must be 1 to %d characters", maxVersionLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("must be printable ASCII without spaces")
		}
	}
	return nil
}

func validDeviceType(s string) error {
	if len(s) == 0 || len(s) > 63 {
		return fmt.Errorf("must be 1 to 63 characters")
	}
	return validID(s, 63)
}

func validLabels(l map[string]string) error {
	if len(l) > maxLabels {
		return fmt.Errorf("at most %d labels", maxLabels)
	}
	for k, v := range l {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("label %q value: %s", k, strings.Join(errs, "; "))
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
