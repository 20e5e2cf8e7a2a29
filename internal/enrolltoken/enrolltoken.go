// Package enrolltoken holds the rules a DeviceEnrollment's bootstrap token
// must meet: the manager reports them as conditions, the OTA server refuses
// tokens that break them.
package enrolltoken

import (
	"fmt"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
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
