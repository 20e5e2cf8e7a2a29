package v1_test

import (
	"net/url"
	"strings"
	"testing"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

func TestParseCheckInBoot(t *testing.T) {
	tests := []struct {
		query, boot, err string
	}{
		{"version=1&securityFloor=1", "", ""},
		{"version=1&securityFloor=1&boot=0f1e2d3c4b5a6978", "0f1e2d3c4b5a6978", ""},
		{"version=1&securityFloor=1&boot=8c1f-2a_b.c", "8c1f-2a_b.c", ""},
		{"version=1&securityFloor=1&boot=", "", "boot: must be 1 to 64 characters"},
		{"version=1&securityFloor=1&boot=" + strings.Repeat("a", 65), "", "boot: must be 1 to 64 characters"},
		{"version=1&securityFloor=1&boot=a%2Fb", "", "boot: only letters"},
		{"version=1&securityFloor=1&boot=a&boot=b", "", "boot: give it once"},
	}
	for _, tc := range tests {
		q, _ := url.ParseQuery(tc.query)
		c, err := protov1.ParseCheckIn(q)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.query, err, tc.err)
			}
			continue
		}
		if err != nil || c.Boot != tc.boot {
			t.Errorf("%s: boot %q, %v; want %q", tc.query, c.Boot, err, tc.boot)
		}
	}
}
