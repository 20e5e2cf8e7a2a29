package assignment

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func FuzzVerify(f *testing.F) {
	key := edKey(9)
	signer := mustSigner(f, key)
	v := mustVerifier(f, key)
	good := mustSign(f, signer, validAssignment())
	other := mustSign(f, mustSigner(f, edKey(10)), validAssignment())
	c := validAssignment()
	c.Commit = true
	commit := mustSign(f, signer, c)
	f.Add(good.Payload, good.Signature)
	f.Add(commit.Payload, commit.Signature)
	f.Add(other.Payload, other.Signature)
	f.Add(good.Payload[:len(good.Payload)-1], good.Signature)
	f.Add([]byte(`{}`), good.Signature)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, payload, sig []byte) {
		s := Signed{Payload: payload, Signature: sig, KeyID: signer.KeyID()}
		a, err := v.Verify(s, "sensor-0042", t0, time.Minute)
		if err != nil {
			n := 0
			for _, e := range sentinels {
				if errors.Is(err, e) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %v matches %d sentinels, want 1", err, n)
			}
			return
		}
		if a.DeviceID != "sensor-0042" || a.Validate() != nil || (a.Commit && a.Rollback) {
			t.Fatalf("accepted an invalid assignment: %+v", a)
		}
		if t0.Add(time.Minute).Before(a.IssuedAt) || !t0.Add(-time.Minute).Before(a.ExpiresAt) {
			t.Fatalf("accepted outside the validity window: %v..%v", a.IssuedAt, a.ExpiresAt)
		}
		// Whatever was accepted is bound to its exact bytes.
		for i := range payload {
			bad := bytes.Clone(payload)
			bad[i] ^= 0x20
			s.Payload = bad
			if _, err := v.Verify(s, "sensor-0042", t0, time.Minute); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("payload with byte %d changed: %v, want ErrBadSignature", i, err)
			}
		}
	})
}
