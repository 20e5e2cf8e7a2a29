package v1

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzLabelSyntax holds the protocol's own label checks to Kubernetes'
// (labels become selectable by Rollout label selectors): both must accept
// and refuse the same keys and values.
func FuzzLabelSyntax(f *testing.F) {
	for _, s := range []string{"", "a", "region", "app.kubernetes.io/name", "example.com/x", "Example.com/x", "a/b/c", "/x", "x/",
		"-a", "a-", "a_b.c-d", "9", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 127) + "a/b", "a..b/c", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validLabelKey(s) == nil, len(validation.IsQualifiedName(s)) == 0; got != want {
			t.Errorf("key %q: protocol accepts=%v, Kubernetes accepts=%v", s, got, want)
		}
		if got, want := validLabelValue(s) == nil, len(validation.IsValidLabelValue(s)) == 0; got != want {
			t.Errorf("value %q: protocol accepts=%v, Kubernetes accepts=%v", s, got, want)
		}
	})
}
