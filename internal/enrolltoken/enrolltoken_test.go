package enrolltoken

import (
	"strings"
	"testing"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		n      int
		reason string
	}{
		{0, otav1.ReasonTokenTooShort},
		{otav1.MinEnrollmentTokenLength - 1, otav1.ReasonTokenTooShort},
		{otav1.MinEnrollmentTokenLength, ""},
		{otav1.MaxEnrollmentTokenLength, ""},
		{otav1.MaxEnrollmentTokenLength + 1, otav1.ReasonTokenTooLong},
	} {
		reason, err := Check([]byte(strings.Repeat("x", tc.n)))
		if reason != tc.reason || (err == nil) != (tc.reason == "") {
			t.Errorf("%d bytes: %q, %v; want %q", tc.n, reason, err, tc.reason)
		}
	}
}
