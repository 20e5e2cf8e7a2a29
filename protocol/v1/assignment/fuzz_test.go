package assignment

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
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

// FuzzKeySet feeds arbitrary payloads and signatures to the key set
// decoder and to Trust.Update. The decoder never panics and what it
// accepts re-encodes to a set it accepts alike; Update refuses with
// exactly one sentinel, and what it accepts is newer than the trust,
// signed by a trusted key and bound to its exact bytes.
func FuzzKeySet(f *testing.F) {
	s1, s2 := mustSigner(f, edKey(21)), mustSigner(f, edKey(22))
	trust := mustTrust(f, 1, edKey(21))
	add := mustKeySet(f, 2, s1, s2)
	retire := mustKeySet(f, 3, s2)
	sig := func(s SignedKeySet, id string) []byte {
		for _, k := range s.Signatures {
			if k.KeyID == id {
				return k.Signature
			}
		}
		return nil
	}
	f.Add(add.Payload, sig(add, s1.KeyID()), sig(add, s2.KeyID()))
	f.Add(retire.Payload, []byte{}, sig(retire, s2.KeyID()))
	f.Add(add.Payload[:len(add.Payload)-1], sig(add, s1.KeyID()), sig(add, s2.KeyID()))
	f.Add([]byte(`{"serial":2,"keys":[]}`), []byte{1}, []byte{2})
	f.Add([]byte(`{"serial":2,"keys":[{"keyID":"","algorithm":"ed25519","publicKey":""}]}`), []byte{}, []byte{})
	f.Add([]byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, payload, sig1, sig2 []byte) {
		if ks, err := parseKeySet(payload); err == nil {
			if _, err := ks.verifiers(1); err == nil {
				again, err := json.Marshal(ks)
				if err != nil {
					t.Fatal(err)
				}
				back, err := parseKeySet(again)
				if err != nil || !reflect.DeepEqual(back, ks) {
					t.Fatalf("re-encoded set %s: %v", again, err)
				}
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("decoder error %v is not ErrMalformed", err)
		}
		s := SignedKeySet{Payload: payload}
		if len(sig1) > 0 {
			s.Signatures = append(s.Signatures, KeySignature{KeyID: s1.KeyID(), Signature: sig1})
		}
		if len(sig2) > 0 {
			s.Signatures = append(s.Signatures, KeySignature{KeyID: s2.KeyID(), Signature: sig2})
		}
		got, err := trust.Update(s)
		if err != nil {
			n := 0
			for _, e := range keySetSentinels {
				if errors.Is(err, e) {
					n++
				}
			}
			if n != 1 || got != nil {
				t.Fatalf("error %v matches %d sentinels (trust %v), want 1", err, n, got)
			}
			return
		}
		if got.Serial() < trust.Serial() || (got.Serial() == trust.Serial() && got != trust) || len(sig1) == 0 {
			t.Fatalf("accepted serial %d over %d, signed by the trusted key: %t", got.Serial(), trust.Serial(), len(sig1) > 0)
		}
		for i := range payload {
			bad := s
			bad.Payload = bytes.Clone(payload)
			bad.Payload[i] ^= 0x20
			if _, err := trust.Update(bad); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("payload with byte %d changed: %v, want ErrBadSignature", i, err)
			}
		}
	})
}
