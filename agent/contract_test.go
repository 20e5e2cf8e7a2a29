package agent

import (
	"net/http"
	"testing"

	"github.com/otaflow/otaflow/internal/contract"
)

// contractClient returns an HTTP client that sends through rt (the default
// transport when nil) and holds every request the agent sends, and every
// answer the test's server gives, to docs/openapi.yaml (internal/contract).
// What disagrees fails tb when it ends. Fake servers mark the answers they
// tamper with on purpose (contract.ExemptResponse); the agent's requests
// are always validated.
func contractClient(tb testing.TB, rt http.RoundTripper) *http.Client {
	return &http.Client{Transport: contract.For(tb).Wrap(rt)}
}
