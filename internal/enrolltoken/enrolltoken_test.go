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

func TestCheckDDITarget(t *testing.T) {
	good := strings.Repeat("k", 32)
	for _, c := range []struct {
		key, tok string
		ok       bool
	}{
		{"sw-0001", good, true},
		{"gw:01.a_b", good, true},
		{"", good, false},
		{"sw 0001", good, false},
		{"sw-0001", good[:31], false},
		{"sw-0001", strings.Repeat("k", 513), false},
		{"sw-0001", good + "\n", false},
		{"sw-0001", good + " x", false},
		{"sw-0001", good + "é", false},
	} {
		if got := CheckDDITarget(c.key, []byte(c.tok)); (got == "") != c.ok {
			t.Errorf("CheckDDITarget(%q, %d bytes) = %q, want ok=%v", c.key, len(c.tok), got, c.ok)
		}
	}
}
