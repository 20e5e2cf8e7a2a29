package agent

import (
	"context"
	"encoding/json"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/contract"
)

// TestEnrollAnswerChecked: an enrollment answer for another device, or
// whose token cannot be sent as a bearer token, is refused and nothing is
// stored; a good one is kept.
func TestEnrollAnswerChecked(t *testing.T) {
	w := newTamperWorld(t, mrand.New(mrand.NewPCG(3, 4)))
	cases := []struct {
		name, device, token, err string
	}{
		{"good", "d1", strings.Repeat("t", 43), ""},
		{"other device", "d2", strings.Repeat("t", 43), `for device "d2"`},
		{"empty token", "d1", "", "not a bearer token"},
		{"token with a space", "d1", "abc def", "not a bearer token"},
		{"token with a newline", "d1", "abc\r\nX-Injected: 1", "not a bearer token"},
		{"token too long", "d1", strings.Repeat("t", 513), "not a bearer token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				rw.Header().Set("Cache-Control", "no-store")
				rw.Header().Set("Content-Type", "application/json")
				if tc.err != "" {
					contract.ExemptResponse(rw.Header(), "an enrollment answer the agent must refuse")
				}
				rw.WriteHeader(http.StatusCreated)
				_ = json.NewEncoder(rw).Encode(map[string]string{"deviceID": tc.device, "token": tc.token, "assignmentKeyID": w.serverKeyID})
			}))
			defer srv.Close()
			store := NewMemStore()
			a, err := New(Config{
				ServerURL: srv.URL, DeviceID: "d1", DeviceType: "sensor-v1", BootstrapToken: "bt",
				HTTPClient:       contractClient(t, nil),
				AssignmentKeyPEM: w.serverPEM, VendorKeysPEM: [][]byte{w.vendorPEM},
				Store: store, Installer: &countingInstaller{}, Version: "1.0.0",
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = a.enroll(ctx)
			switch {
			case tc.err == "" && (err != nil || a.State().Token != tc.token):
				t.Fatalf("good answer: %v, token %q", err, a.State().Token)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			case tc.err != "" && a.State().Token != "":
				t.Fatalf("a refused answer stored token %q", a.State().Token)
			}
		})
	}
}
