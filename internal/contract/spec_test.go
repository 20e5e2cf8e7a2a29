package contract_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/internal/contract"
)

// TestSpecValid: docs/openapi.yaml loads with kin-openapi and passes its
// document validation (examples included), so `go test` alone refuses an
// invalid contract; hack/openapi-lint.sh adds Redocly's ruleset in
// `make test`.
func TestSpecValid(t *testing.T) {
	spec, err := contract.Load(contract.SpecPath())
	if err != nil {
		t.Fatal(err)
	}
	if !spec.Doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %s, want 3.1", spec.Doc.OpenAPI)
	}
	var got []string
	for path, item := range spec.Doc.Paths.Map() {
		for method := range item.Operations() {
			got = append(got, method+" "+path)
		}
	}
	slices.Sort(got)
	want := []string{
		"GET /v1/blobs/{encryptedSHA256}", "GET /v1/info", "GET /v1/keys", "GET /v1/update", "HEAD /v1/blobs/{encryptedSHA256}",
		"POST /v1/enroll", "POST /v1/status",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("operations %v, want %v", got, want)
	}
}

// TestSpecInvalidRefused: the loader's validation is real: a document
// with a broken reference, or a schema that is not one, is refused.
func TestSpecInvalidRefused(t *testing.T) {
	good, err := os.ReadFile(contract.SpecPath())
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(string) string{
		"dangling $ref": func(s string) string {
			return strings.Replace(s, "'#/components/schemas/EnrollResponse'", "'#/components/schemas/EnrolResponse'", 1)
		},
		"bad type": func(s string) string {
			return strings.Replace(s, "    SecurityFloor:\n      type: integer", "    SecurityFloor:\n      type: integr", 1)
		},
		"a 3.1 keyword the fast validator would ignore": func(s string) string {
			return strings.Replace(s, "schema: {type: string, enum: [no-store]}", "schema: {type: string, const: no-store}", 1)
		},
		"example off its schema": func(s string) string {
			return strings.Replace(s, "              kem: x25519\n", "              kem: rsa\n", 1)
		},
	} {
		bad := edit(string(good))
		if bad == string(good) {
			t.Fatalf("%s: the edit did not apply", name)
		}
		if _, err := contract.LoadData([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
