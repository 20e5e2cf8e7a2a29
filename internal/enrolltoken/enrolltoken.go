// Package enrolltoken holds the rules a DeviceEnrollment's bootstrap token
// must meet: the manager reports them as conditions, the OTA server refuses
// tokens that break them.
package enrolltoken

import (
	"fmt"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// Check returns the DeviceEnrollment condition reason and an error for a
// token that breaks the rules, or "" and nil.
func Check(tok []byte) (string, error) {
	switch {
	case len(tok) < otav1.MinEnrollmentTokenLength:
		return otav1.ReasonTokenTooShort, fmt.Errorf("the token has %d bytes; at least %d are needed (e.g. openssl rand -base64 32)", len(tok), otav1.MinEnrollmentTokenLength)
	case len(tok) > otav1.MaxEnrollmentTokenLength:
		return otav1.ReasonTokenTooLong, fmt.Errorf("the token has %d bytes; at most %d are accepted", len(tok), otav1.MaxEnrollmentTokenLength)
	}
	return "", nil
}

// CheckDDITarget says why one entry of a DeviceEnrollment's hawkBit DDI
// target-tokens Secret is unusable ("" when it is usable): the key must be
// a device ID, the token 32–512 bytes of visible ASCII (it travels in an
// Authorization header). The OTA server drops such entries; the manager
// reports them as a condition.
func CheckDDITarget(key string, tok []byte) string {
	if err := protov1.ValidateDeviceID(key); err != nil {
		return "not a device ID: " + err.Error()
	}
	if _, err := Check(tok); err != nil {
		return err.Error()
	}
	if !otav1.HeaderSafeToken(tok) {
		return "the token holds spaces, control or non-ASCII characters (a trailing newline?), which an Authorization header cannot carry"
	}
	return ""
}
