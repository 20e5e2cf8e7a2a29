package mender_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/internal/contract"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/mender"
)

// Every request of these tests and every answer is held to the contract
// of the API that serves it: the paths under /api/devices/ to
// docs/mender-openapi.yaml, the others (the native API the front falls
// back to) to docs/openapi.yaml. The checkers fail the test at cleanup.

// invalidOnPurpose names the tests that send requests the contracts call
// invalid on purpose through helpers that cannot mark them one by one. The
// checkers exempt their requests only while the server refuses them (4xx);
// every answer is still validated. A new test marks each such request with
// contract.Exempt (and contract.Forward) instead.
var invalidOnPurpose = map[string]string{
	"TestAuthRefusals":    "bodies that are not auth requests, empty id_data, a missing signature",
	"TestDeviceTokens":    "missing, garbled, expired and foreign device tokens",
	"TestNextBadRequests": "provides without artifact_name or device_type, a body that is not JSON, an unknown path, a method a path does not have",
	"TestFailureLog":      "a deployment log without messages",
	"TestStatusRefusals":  "an unknown status, a body that is not JSON, a body over the limit",
	"TestInventory":       "a body that is not a list of attributes, no token",
}

// unservedPrefix is the path the checker of wrong methods routes a request
// to: no path of the contract has it, so the answer must be the contract's
// NotFound, as the front answers another method on a listed path (404,
// never 405: mender-client falls back to another variant only on 404).
const unservedPrefix = "/api/devices/unserved-method"

// checked wraps the server's handler in the contract checkers.
func checked(t *testing.T, next http.Handler) http.Handler {
	t.Helper()
	path := contract.DocPath("mender-openapi.yaml")
	m := contract.ForSpec(t, path)
	m.BodyLimit = mender.MaxBodyBytes
	wrong := contract.ForSpec(t, path)
	wrong.BodyLimit = mender.MaxBodyBytes
	wrong.Canonical = func(p string) string { return unservedPrefix + p }
	native := contract.For(t)
	native.BodyLimit = otaserver.MaxBodyBytes
	test, _, _ := strings.Cut(t.Name(), "/")
	if why, ok := invalidOnPurpose[test]; ok {
		for _, c := range []*contract.Checker{m, wrong, native} {
			c.InvalidOnPurpose(test + ": " + why)
		}
	}
	served := servedMethods(t, path)
	mh, wh, nh := m.Handler(next), wrong.Handler(next), native.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !strings.HasPrefix(r.URL.Path, mender.APIPrefix):
			nh.ServeHTTP(w, r)
		case served(r.URL.Path) != nil && !served(r.URL.Path)[r.Method]:
			wh.ServeHTTP(w, r)
		default:
			mh.ServeHTTP(w, r)
		}
	})
}

// servedMethods returns the methods the contract has on a path, nil for a
// path it does not list.
func servedMethods(t *testing.T, path string) func(p string) map[string]bool {
	t.Helper()
	spec, err := contract.LoadOnce(path)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		re      *regexp.Regexp
		methods map[string]bool
	}
	var paths []entry
	for _, p := range spec.Doc.Paths.InMatchingOrder() {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if strings.HasPrefix(s, "{") {
				segs[i] = `[^/]+`
			} else {
				segs[i] = regexp.QuoteMeta(s)
			}
		}
		e := entry{re: regexp.MustCompile("^" + strings.Join(segs, "/") + "$"), methods: map[string]bool{}}
		for m := range spec.Doc.Paths.Value(p).Operations() {
			e.methods[strings.ToUpper(m)] = true
		}
		paths = append(paths, e)
	}
	return func(p string) map[string]bool {
		for _, e := range paths {
			if e.re.MatchString(p) {
				return e.methods
			}
		}
		return nil
	}
}
