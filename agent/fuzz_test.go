package agent

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/assignment"
)

// fuzzKey is a fixed signing key so that committed seeds stay valid.
var fuzzKey = ed25519.NewKeyFromSeed([]byte(strings.Repeat("k", ed25519.SeedSize)))

var fuzzNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// fuzzAnswer returns a valid signed install answer for device dev-1.
func fuzzAnswer(tb testing.TB) []byte {
	s, err := assignment.NewSigner(fuzzKey)
	if err != nil {
		tb.Fatal(err)
	}
	signed, err := s.Sign(assignment.Assignment{
		DeviceID: "dev-1", Rollout: "fleet/ro", Release: "fleet/fw-2", Version: "2.0.0", SecurityVersion: 4,
		PlainSHA256: strings.Repeat("a", 64), PlainSize: 100, EncryptedSHA256: strings.Repeat("b", 64), EncryptedSize: 174,
		Suite: "otaflow-enc/v1", BlobURL: "https://ota.example.com/v1/blobs/" + strings.Repeat("b", 64), KEM: "x25519",
		WrappedKey: make([]byte, 80), VendorSignature: "c2ln", Nonce: strings.Repeat("0f", 16),
		IssuedAt: fuzzNow.Add(-time.Minute), ExpiresAt: fuzzNow.Add(time.Hour),
	})
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(UpdateResponse{Action: ActionInstall, Rollout: "fleet/ro", Assignment: &signed})
	return b
}

// FuzzUpdateResponse parses and verifies update answers as a device does.
// Whatever the bytes, it must not panic, every failure must be a
// *Refusal, and an accepted assignment must satisfy every device check.
func FuzzUpdateResponse(f *testing.F) {
	f.Add(fuzzAnswer(f))
	f.Add([]byte(`{"action":"cancel","rollout":"fleet/ro","reason":"rollout aborted"}`))
	f.Add([]byte(`{"action":"install","rollout":"fleet/ro"}`))
	f.Add([]byte(`{"action":"rollback","rollout":"a/b","assignment":{"payload":"e30=","signature":"","keyID":""}}`))
	v, err := assignment.NewVerifier(fuzzKey.Public())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		u, err := ParseUpdateResponse(body)
		if err != nil {
			if _, ok := AsRefusal(err); !ok {
				t.Fatalf("parse error is not a refusal: %v", err)
			}
			return
		}
		if u.Action == ActionCancel {
			return
		}
		exp := Expectation{DeviceID: "dev-1", KEM: "x25519", Nonce: strings.Repeat("0f", 16), SecurityFloor: 3, Now: fuzzNow, Skew: time.Minute}
		a, err := VerifyAssignment(v, u, exp)
		if err != nil {
			r, ok := AsRefusal(err)
			if !ok || r.Code == "" || reportReason(r.Error()) == "" {
				t.Fatalf("verify error is not a usable refusal: %v", err)
			}
			return
		}
		if a.DeviceID != exp.DeviceID || a.SecurityVersion < exp.SecurityFloor || !strings.EqualFold(a.Nonce, exp.Nonce) ||
			a.Rollout != u.Rollout || a.Rollback != (u.Action == ActionRollback) || !fuzzNow.Before(a.ExpiresAt.Add(time.Minute)) {
			t.Fatalf("accepted an assignment that fails a device check: %+v", a)
		}
	})
}

func TestFuzzSeedAccepted(t *testing.T) {
	v, _ := assignment.NewVerifier(fuzzKey.Public())
	u, err := ParseUpdateResponse(fuzzAnswer(t))
	if err != nil {
		t.Fatal(err)
	}
	exp := Expectation{DeviceID: "dev-1", KEM: "x25519", Nonce: strings.Repeat("0f", 16), SecurityFloor: 3, Now: fuzzNow, Skew: time.Minute}
	if _, err := VerifyAssignment(v, u, exp); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Expectation){
		"other device": func(e *Expectation) { e.DeviceID = "dev-2" },
		"floor":        func(e *Expectation) { e.SecurityFloor = 5 },
		"nonce":        func(e *Expectation) { e.Nonce = strings.Repeat("aa", 16) },
		"expired":      func(e *Expectation) { e.Now = fuzzNow.Add(2 * time.Hour) },
		"kem":          func(e *Expectation) { e.KEM = "p256" },
	} {
		e := exp
		mutate(&e)
		if _, err := VerifyAssignment(v, u, e); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	u.Action = ActionRollback
	if _, err := VerifyAssignment(v, u, exp); err == nil {
		t.Error("install assignment accepted as a rollback")
	}
}
