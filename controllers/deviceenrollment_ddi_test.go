package controllers

import (
	"testing"

	"pgregory.net/rapid"

	"github.com/otaflow/otaflow/otaserver"
)

// TestTargetTokenRuleMatchesServer: the condition's rule for one
// target-tokens entry is the OTA server's (which the manager does not
// link), for keys and tokens around every limit.
func TestTargetTokenRuleMatchesServer(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		key := rapid.OneOf(
			rapid.StringMatching(`[A-Za-z0-9._:-]{0,130}`),
			rapid.StringMatching(`[ -~]{0,8}`),
			rapid.String(),
		).Draw(t, "key")
		tok := rapid.OneOf(
			rapid.SliceOfN(rapid.ByteRange(0x21, 0x7e), 0, 520),
			rapid.SliceOfN(rapid.Byte(), 28, 40),
		).Draw(t, "token")
		got, want := targetTokenProblem(key, tok), otaserver.CheckDDITargetToken(key, tok)
		if got != want {
			t.Fatalf("key %q token %q: manager says %q, server %q", key, tok, got, want)
		}
	})
}
