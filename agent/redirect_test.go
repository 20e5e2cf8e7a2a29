package agent

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestBlobRedirectDropsToken: a blob download the OTA server redirects
// (presigned object-store URL, here on the same host and another port,
// where net/http itself would forward the header) reaches the target with
// Range but without the bearer token.
func TestBlobRedirectDropsToken(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || r.Header.Get("Range") != "bytes=10-" {
			t.Errorf("redirected request: Authorization %q Range %q", r.Header.Get("Authorization"), r.Header.Get("Range"))
		}
		w.WriteHeader(http.StatusPartialContent)
	}))
	defer target.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			t.Errorf("the OTA server did not get the token")
		}
		http.Redirect(w, r, target.URL+"/presigned?X-Amz-Signature=x", http.StatusTemporaryRedirect)
	}))
	defer origin.Close()
	a := &Agent{cfg: Config{HTTPClient: &http.Client{}}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, origin.URL+"/v1/blobs/x", nil)
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Range", "bytes=10-")
	resp, err := a.blobClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The caller's client is left as configured.
	if a.cfg.HTTPClient.CheckRedirect != nil {
		t.Fatal("blobClient changed the configured client")
	}
}
