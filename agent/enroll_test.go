package agent

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/contract"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/tokenseal"
)

// sealedAnswer is a revision 4 server's answer to req: token sealed to
// the request's public key for the server key keyID.
func sealedAnswer(tb testing.TB, req protov1.EnrollRequest, token, keyID string) protov1.EnrollResponse {
	tb.Helper()
	pub, err := base64.StdEncoding.DecodeString(req.PublicKey)
	mustT(tb, err)
	sealed, err := tokenseal.Seal(keywrap.KEM(req.KEM), pub, token, keyID, req.DeviceID)
	mustT(tb, err)
	return protov1.EnrollResponse{DeviceID: req.DeviceID, SealedToken: base64.StdEncoding.EncodeToString(sealed), AssignmentKeyID: keyID}
}

// TestEnrollAnswerChecked: an enrollment answer for another device, whose
// sealed token does not open with the device's key for this device and
// the answer's key ID, or whose token cannot be sent as a bearer token, is
// refused and nothing is stored; a good one is kept.
func TestEnrollAnswerChecked(t *testing.T) {
	w := newTamperWorld(t, mrand.New(mrand.NewPCG(3, 4)))
	good := strings.Repeat("t", 43)
	otherKey, err := keywrap.GenerateKey(keywrap.X25519)
	if err != nil {
		t.Fatal(err)
	}
	otherKeyID := func() string { s := sha256.Sum256([]byte("other server")); return hex.EncodeToString(s[:]) }()
	// Each case edits the answer of a revision 4 server.
	cases := []struct {
		name, token, err string
		edit             func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse)
	}{
		{"good", good, "", nil},
		{"other device", "", `for device "d2"`, func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) { r.DeviceID = "d2" }},
		{"sealed for another device", "", "no token this device can open", func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) {
			req.DeviceID = "d2"
			r.SealedToken = sealedAnswer(t, req, good, w.serverKeyID).SealedToken
		}},
		{"sealed to another key", "", "no token this device can open", func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) {
			req.PublicKey = base64.StdEncoding.EncodeToString(otherKey.PublicKey().Bytes())
			r.SealedToken = sealedAnswer(t, req, good, w.serverKeyID).SealedToken
		}},
		{"other server key ID", "", "no token this device can open", func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) {
			r.AssignmentKeyID = otherKeyID
		}},
		{"truncated", "", "no token this device can open", func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) {
			r.SealedToken = r.SealedToken[:len(r.SealedToken)-4]
		}},
		{"tampered", "", "no token this device can open", func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) {
			b, _ := base64.StdEncoding.DecodeString(r.SealedToken)
			b[len(b)-1] ^= 1
			r.SealedToken = base64.StdEncoding.EncodeToString(b)
		}},
		{"sealed and clear", "", "no token this device can open", func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) { r.LegacyToken = good }},
		{"no token at all", "", "no token this device can open", func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) { r.SealedToken = "" }},
		// Servers before revision 4 send the token in clear.
		{"clear token of an older server", good, "", func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) {
			r.SealedToken, r.LegacyToken = "", good
		}},
		{"clear token with a space", "", "not a bearer token", func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) {
			r.SealedToken, r.LegacyToken = "", "abc def"
		}},
		{"clear token with a newline", "", "not a bearer token", func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) {
			r.SealedToken, r.LegacyToken = "", "abc\r\nX-Injected: 1"
		}},
		{"clear token too long", "", "not a bearer token", func(t *testing.T, req protov1.EnrollRequest, r *protov1.EnrollResponse) {
			r.SealedToken, r.LegacyToken = "", strings.Repeat("t", 513)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				var req protov1.EnrollRequest
				if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
					t.Error(err)
				}
				answer := sealedAnswer(t, req, good, w.serverKeyID)
				if tc.edit != nil {
					tc.edit(t, req, &answer)
					contract.ExemptResponse(rw.Header(), "an enrollment answer the agent must refuse, or one of a server before revision 4")
				}
				rw.Header().Set("Cache-Control", "no-store")
				rw.Header().Set("Content-Type", "application/json")
				rw.WriteHeader(http.StatusCreated)
				_ = json.NewEncoder(rw).Encode(answer)
			}))
			defer srv.Close()
			store := NewMemStore()
			a, err := New(Config{
				ServerURL: srv.URL, DeviceID: "d1", DeviceType: "sensor-v1", BootstrapToken: "bt",
				HTTPClient:       contractClient(t, nil),
				AssignmentKeyPEM: w.serverPEM, VendorKeysPEM: [][]byte{w.vendorPEM},
				Store: store, Installer: &countingInstaller{}, Version: "1.0.0",
				Backoff: Backoff{Initial: time.Millisecond, Max: time.Millisecond}, PollInterval: time.Hour,
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
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrEnrollAnswer)):
				t.Fatalf("error %v, want ErrEnrollAnswer containing %q", err, tc.err)
			case tc.err != "" && a.State().Token != "":
				t.Fatalf("a refused answer stored token %q", a.State().Token)
			}
			if tc.err == "" {
				return
			}
			// A step that meets such an answer waits for the next poll:
			// no retry loop rotating the token on the server.
			calls.Store(0)
			wait, err := a.Step(ctx)
			if !errors.Is(err, ErrEnrollAnswer) || wait < 30*time.Minute || calls.Load() != 1 {
				t.Fatalf("Step = %v, %v after %d enrollments; want ErrEnrollAnswer, a poll interval, 1 enrollment", wait, err, calls.Load())
			}
		})
	}
}
