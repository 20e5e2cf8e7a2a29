package agent

import (
	"context"
	"encoding/json"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// TestCheckInSendsBoot: every check-in carries a digest of the current
// boot ID, and it changes when the boot does.
func TestCheckInSendsBoot(t *testing.T) {
	var mu sync.Mutex
	var boots []string
	w := newTamperWorld(t, mrand.New(mrand.NewPCG(1, 2)))
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Cache-Control", "no-store")
		switch r.URL.Path {
		case "/v1/enroll":
			var req protov1.EnrollRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			rw.Header().Set("Content-Type", "application/json")
			rw.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(rw).Encode(sealedAnswer(t, req, strings.Repeat("t", 43), w.serverKeyID))
		case "/v1/update":
			mu.Lock()
			boots = append(boots, r.URL.Query().Get("boot"))
			mu.Unlock()
			rw.WriteHeader(http.StatusNoContent)
		default:
			rw.Header().Set("Content-Type", "application/json")
			rw.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(rw).Encode(protov1.Error{Code: "not_found", Message: "no such endpoint"})
		}
	}))
	defer srv.Close()
	boot := "boot-1"
	a, err := New(Config{
		ServerURL: srv.URL, DeviceID: "d1", DeviceType: "sensor-v1", BootstrapToken: "bt", HTTPClient: contractClient(t, nil),
		AssignmentKeyPEM: w.serverPEM, VendorKeysPEM: [][]byte{w.vendorPEM},
		Store: NewMemStore(), Installer: &countingInstaller{}, Version: "1.0.0",
		BootID: func() string { return boot }, Reboot: func(context.Context) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range []string{"boot-1", "boot-1", "boot-2"} {
		boot = b
		if _, err := a.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{bootTag("boot-1"), bootTag("boot-1"), bootTag("boot-2")}
	if len(boots) != 3 || boots[0] != want[0] || boots[1] != want[1] || boots[2] != want[2] || want[0] == want[2] || len(want[0]) != 16 {
		t.Fatalf("boots sent %q, want %q", boots, want)
	}
}
