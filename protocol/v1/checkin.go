package v1

import (
	"fmt"
	"net/url"
	"strconv"
)

// CheckIn is what GET /v1/update says about the device, from its query.
type CheckIn struct {
	// Version is the running firmware version (required).
	Version string
	// SecurityFloor is the device's anti-rollback floor (required).
	SecurityFloor int64
	// Nonce, when set, is echoed in the assignment (16–128 hex characters).
	Nonce string
	// Boot, when set, identifies the device's current boot (opaque, 1–64
	// characters of [A-Za-z0-9._-]); a check-in on the previous version
	// from the boot the offer was made in is then not taken for a revert.
	Boot string
}

// ParseCheckIn parses and validates the update query.
func ParseCheckIn(q url.Values) (CheckIn, error) {
	var c CheckIn
	for k, v := range q {
		switch k {
		case ParamVersion, ParamSecurityFloor, ParamNonce, ParamBoot:
			if len(v) != 1 {
				return c, fmt.Errorf("%s: give it once", k)
			}
		default:
			return c, fmt.Errorf("unknown parameter %q", k)
		}
	}
	c.Version = q.Get(ParamVersion)
	if err := validVersion(c.Version); err != nil {
		return c, fmt.Errorf("version: %w", err)
	}
	f, err := strconv.ParseInt(q.Get(ParamSecurityFloor), 10, 64)
	if err != nil || f < 0 || f > MaxSecurityFloor {
		return c, fmt.Errorf("securityFloor: must be an integer from 0 to 4294967295")
	}
	c.SecurityFloor = f
	if n := q.Get(ParamNonce); n != "" {
		if err := validNonce(n); err != nil {
			return c, fmt.Errorf("nonce: %w", err)
		}
		c.Nonce = n
	}
	if b, ok := q[ParamBoot]; ok {
		if err := validBoot(b[0]); err != nil {
			return c, fmt.Errorf("boot: %w", err)
		}
		c.Boot = b[0]
	}
	return c, nil
}

func validBoot(s string) error {
	if len(s) < 1 || len(s) > 64 {
		return fmt.Errorf("must be 1 to 64 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("only letters, digits, '.', '_' and '-' are allowed")
		}
	}
	return nil
}
