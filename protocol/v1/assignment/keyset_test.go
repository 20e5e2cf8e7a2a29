package assignment

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

var keySetSentinels = []error{ErrBadSignature, ErrMalformed, ErrUntrustedKey, ErrStaleKeySet}

func checkKeySetSentinel(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	for _, s := range keySetSentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("error %v also matches %v", err, s)
		}
	}
}

func mustKeySet(t testing.TB, serial int64, signers ...*Signer) SignedKeySet {
	t.Helper()
	s, err := SignKeySet(serial, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustTrust(t testing.TB, serial int64, keys ...crypto.Signer) *Trust {
	t.Helper()
	ks := KeySet{Serial: serial}
	for _, k := range keys {
		e, err := PublicKeyOf(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		ks.Keys = append(ks.Keys, e)
	}
	tr, err := NewTrust(ks)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// signKeySetPayload signs payload bytes as they are with each signer.
func signKeySetPayload(t testing.TB, payload []byte, signers ...*Signer) SignedKeySet {
	t.Helper()
	out := SignedKeySet{Payload: payload}
	for _, s := range signers {
		sig, err := s.signMessage(keySetMessage(payload))
		if err != nil {
			t.Fatal(err)
		}
		out.Signatures = append(out.Signatures, KeySignature{KeyID: s.KeyID(), Signature: sig})
	}
	return out
}

// keySetWith returns the payload of ks as a JSON object edited by edit.
func keySetWith(t *testing.T, ks SignedKeySet, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ks.Payload, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKeySetUpdate(t *testing.T) {
	k1, k2, k3 := edKey(1), ecKey(t), edKey(3)
	s1, s2, s3 := mustSigner(t, k1), mustSigner(t, k2), mustSigner(t, k3)
	provisioned := mustTrust(t, 0, k1)
	both := mustTrust(t, 2, k1, k2)
	retired := mustTrust(t, 3, k2)

	add := mustKeySet(t, 2, s1, s2)   // new key published, old still there
	retire := mustKeySet(t, 3, s2)    // old key removed
	readd := mustKeySet(t, 4, s2, s1) // the old key published again, to recover
	foreign := mustKeySet(t, 9, s3)   // another fleet's server
	tamperedPayload := add
	tamperedPayload.Payload = bytes.Replace(add.Payload, []byte(`"serial":2`), []byte(`"serial":7`), 1)
	flipSig := func(s SignedKeySet, i int) SignedKeySet {
		s.Signatures = slices.Clone(s.Signatures)
		sig := bytes.Clone(s.Signatures[i].Signature)
		sig[len(sig)/2] ^= 1
		s.Signatures[i].Signature = sig
		return s
	}
	i1 := slices.IndexFunc(add.Signatures, func(s KeySignature) bool { return s.KeyID == s1.KeyID() })
	withSigs := func(s SignedKeySet, sigs ...KeySignature) SignedKeySet {
		s.Signatures = sigs
		return s
	}
	extra := signKeySetPayload(t, add.Payload, s3).Signatures[0]
	assignmentDomain := add
	assignmentDomain.Signatures = nil
	for _, s := range []*Signer{s1, s2} {
		sig, err := s.signMessage(signedMessage(add.Payload))
		if err != nil {
			t.Fatal(err)
		}
		assignmentDomain.Signatures = append(assignmentDomain.Signatures, KeySignature{KeyID: s.KeyID(), Signature: sig})
	}
	sorted := func(ks ...*Signer) []string {
		var ids []string
		for _, k := range ks {
			ids = append(ids, k.KeyID())
		}
		slices.Sort(ids)
		return ids
	}

	tests := []struct {
		name    string
		trust   *Trust
		set     SignedKeySet
		want    error
		serial  int64
		keys    []string
		same    bool // the trust is returned unchanged
		comment string
	}{
		{name: "new key added", trust: provisioned, set: add, serial: 2, keys: sorted(s1, s2)},
		{name: "old key retired", trust: both, set: retire, serial: 3, keys: sorted(s2)},
		{name: "retired key published again", trust: retired, set: readd, serial: 4, keys: sorted(s1, s2)},
		{name: "device that missed the window recovers", trust: provisioned, set: readd, serial: 4, keys: sorted(s1, s2)},
		{name: "same set again", trust: both, set: mustKeySet(t, 2, s2, s1), serial: 2, keys: sorted(s1, s2), same: true},
		{name: "device that missed the window", trust: provisioned, set: retire, want: ErrUntrustedKey},
		{name: "device of another fleet", trust: provisioned, set: foreign, want: ErrUntrustedKey},
		{name: "replay of an older serial", trust: retired, set: add, want: ErrStaleKeySet},
		{name: "same serial, other keys", trust: both, set: mustKeySet(t, 2, s2, s3), want: ErrStaleKeySet},
		{name: "tampered payload", trust: provisioned, set: tamperedPayload, want: ErrBadSignature},
		{name: "tampered trusted signature", trust: provisioned, set: flipSig(add, i1), want: ErrBadSignature},
		{name: "tampered signature of the new key", trust: provisioned, set: flipSig(add, 1-i1), want: ErrBadSignature},
		{name: "assignment-domain signatures", trust: provisioned, set: assignmentDomain, want: ErrBadSignature},
		{name: "signature of a listed key missing", trust: provisioned, set: withSigs(add, add.Signatures[i1]), want: ErrMalformed},
		{name: "signature twice", trust: provisioned, set: withSigs(add, add.Signatures[0], add.Signatures[1], add.Signatures[0]), want: ErrMalformed},
		{name: "unknown signer", trust: provisioned, set: withSigs(add, append(slices.Clone(add.Signatures), extra)...), want: ErrMalformed},
		{name: "only unknown signers", trust: provisioned, set: withSigs(add, extra), want: ErrUntrustedKey},
		{name: "no signature", trust: provisioned, set: withSigs(add), want: ErrMalformed},
		{name: "oversize payload", trust: provisioned, set: signKeySetPayload(t, append(bytes.Clone(add.Payload), bytes.Repeat([]byte(" "), MaxKeySetSize)...), s1, s2), want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.trust.Update(tt.set)
			if tt.want != nil {
				checkKeySetSentinel(t, err, tt.want)
				if got != nil {
					t.Fatal("a trust is returned with the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Serial() != tt.serial || !slices.Equal(got.KeyIDs(), tt.keys) || (got == tt.trust) != tt.same {
				t.Fatalf("trust serial %d keys %v (same %t), want %d %v (same %t)", got.Serial(), got.KeyIDs(), got == tt.trust, tt.serial, tt.keys, tt.same)
			}
			// What was accepted round-trips through its persisted form.
			back, err := NewTrust(got.KeySet())
			if err != nil || back.Serial() != got.Serial() || !slices.Equal(back.KeyIDs(), got.KeyIDs()) {
				t.Fatalf("persisted trust: %v %v", back, err)
			}
		})
	}
}

// TestKeySetPayloads signs payloads SignKeySet would refuse, with every
// key they list, and checks that Update refuses them after the signature
// passed.
func TestKeySetPayloads(t *testing.T) {
	k1, k2 := edKey(1), ecKey(t)
	s1, s2 := mustSigner(t, k1), mustSigner(t, k2)
	trust := mustTrust(t, 0, k1)
	good := mustKeySet(t, 2, s1, s2)
	keyAt := func(m map[string]any, i int) map[string]any { return m["keys"].([]any)[i].(map[string]any) }
	var p384DER []byte
	if k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		t.Fatal(err)
	} else if p384DER, err = x509.MarshalPKIXPublicKey(&k.PublicKey); err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte { return keySetWith(t, good, f) }
	tests := []struct {
		name    string
		payload []byte
	}{
		{"not JSON", []byte("keys")},
		{"empty", nil},
		{"array", []byte(`[]`)},
		{"trailing data", append(bytes.Clone(good.Payload), '{', '}')},
		{"unknown field", edit(func(m map[string]any) { m["current"] = s1.KeyID() })},
		{"unknown key field", edit(func(m map[string]any) { keyAt(m, 0)["current"] = true })},
		{"field in other case", edit(func(m map[string]any) { m["Serial"] = m["serial"]; delete(m, "serial") })},
		{"duplicate field", bytes.Replace(good.Payload, []byte(`{"serial":2,`), []byte(`{"serial":2,"serial":9,`), 1)},
		{"missing serial", edit(func(m map[string]any) { delete(m, "serial") })},
		{"missing keys", edit(func(m map[string]any) { delete(m, "keys") })},
		{"missing keyID", edit(func(m map[string]any) { delete(keyAt(m, 0), "keyID") })},
		{"missing algorithm", edit(func(m map[string]any) { delete(keyAt(m, 1), "algorithm") })},
		{"null key", edit(func(m map[string]any) { m["keys"] = append(m["keys"].([]any), nil) })},
		{"serial zero", edit(func(m map[string]any) { m["serial"] = 0 })},
		{"serial negative", edit(func(m map[string]any) { m["serial"] = -1 })},
		{"serial beyond 2^53", edit(func(m map[string]any) { m["serial"] = int64(MaxKeySetSerial) + 1 })},
		{"serial not an integer", edit(func(m map[string]any) { m["serial"] = 2.5 })},
		{"serial a string", edit(func(m map[string]any) { m["serial"] = "2" })},
		{"no keys", edit(func(m map[string]any) { m["keys"] = []any{} })},
		{"wrong algorithm", edit(func(m map[string]any) {
			for i := range 2 {
				k := keyAt(m, i)
				k["algorithm"] = map[string]string{AlgEd25519: AlgECDSAP256, AlgECDSAP256: AlgEd25519}[k["algorithm"].(string)]
			}
		})},
		{"keyID of another key", edit(func(m map[string]any) { keyAt(m, 0)["keyID"] = strings.Repeat("ab", 32) })},
		{"keyID upper case", edit(func(m map[string]any) { keyAt(m, 0)["keyID"] = strings.ToUpper(keyAt(m, 0)["keyID"].(string)) })},
		{"P-384 key", edit(func(m map[string]any) { keyAt(m, 0)["publicKey"] = p384DER })},
		{"publicKey not DER", edit(func(m map[string]any) { keyAt(m, 0)["publicKey"] = []byte{1, 2, 3} })},
		{"unordered keys", edit(func(m map[string]any) { ks := m["keys"].([]any); ks[0], ks[1] = ks[1], ks[0] })},
		{"key twice", edit(func(m map[string]any) { m["keys"] = append(m["keys"].([]any), keyAt(m, 0)) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := trust.Update(signKeySetPayload(t, tt.payload, s1, s2))
			checkKeySetSentinel(t, err, ErrMalformed)
			if got != nil {
				t.Fatal("a trust is returned with the error")
			}
		})
	}
	// The edits are refused for what they change, not because the helper
	// breaks the payload.
	if _, err := trust.Update(signKeySetPayload(t, edit(func(map[string]any) {}), s1, s2)); err != nil {
		t.Fatalf("unedited payload: %v", err)
	}
}

// TestKeySetDomainSeparation: a key set signature never verifies as an
// assignment signature over the same bytes, nor the other way round.
func TestKeySetDomainSeparation(t *testing.T) {
	key := edKey(1)
	s := mustSigner(t, key)
	set := mustKeySet(t, 1, s)
	asAssignment := Signed{Payload: set.Payload, Signature: set.Signatures[0].Signature, KeyID: s.KeyID()}
	if _, err := mustVerifier(t, key).Verify(asAssignment, "sensor-0042", t0, 0); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("key set signature as an assignment: %v", err)
	}
	a := mustSign(t, s, validAssignment())
	asSet := SignedKeySet{Payload: a.Payload, Signatures: []KeySignature{{KeyID: s.KeyID(), Signature: a.Signature}}}
	if _, err := mustTrust(t, 0, key).Update(asSet); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("assignment signature as a key set: %v", err)
	}
}

func TestSignKeySet(t *testing.T) {
	s1, s2 := mustSigner(t, edKey(1)), mustSigner(t, edKey(2))
	// Deterministic and independent of the order of the signers: replicas
	// holding the same keys publish the same bytes.
	a, b := mustKeySet(t, 5, s1, s2), mustKeySet(t, 5, s2, s1)
	if !bytes.Equal(a.Payload, b.Payload) || a.Signatures[0].KeyID > a.Signatures[1].KeyID {
		t.Fatalf("payloads differ or signatures unordered:\n%s\n%s", a.Payload, b.Payload)
	}
	ids := []string{s1.KeyID(), s2.KeyID()}
	slices.Sort(ids)
	want := fmt.Sprintf(`{"serial":5,"keys":[{"keyID":%q,"algorithm":"ed25519","publicKey":`, ids[0])
	if !strings.HasPrefix(string(a.Payload), want) {
		t.Fatalf("payload %s, want prefix %s", a.Payload, want)
	}
	var many []*Signer
	for i := range MaxKeySetKeys + 1 {
		many = append(many, mustSigner(t, edKey(byte(10+i))))
	}
	for name, c := range map[string]struct {
		serial  int64
		signers []*Signer
	}{
		"serial 0":       {0, []*Signer{s1}},
		"serial too big": {MaxKeySetSerial + 1, []*Signer{s1}},
		"no key":         {1, nil},
		"same key twice": {1, []*Signer{s1, s1}},
		"too many keys":  {1, many},
	} {
		if _, err := SignKeySet(c.serial, c.signers...); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := SignKeySet(1, many[:MaxKeySetKeys]...); err != nil {
		t.Fatalf("%d keys: %v", MaxKeySetKeys, err)
	}
}

func TestTrustVerify(t *testing.T) {
	k1, k2 := edKey(1), ecKey(t)
	trust := mustTrust(t, 0, k1, k2)
	for _, k := range []crypto.Signer{k1, k2} {
		if _, err := trust.Verify(mustSign(t, mustSigner(t, k), validAssignment()), "sensor-0042", t0, 0); err != nil {
			t.Fatal(err)
		}
	}
	s := mustSign(t, mustSigner(t, edKey(3)), validAssignment())
	if _, err := trust.Verify(s, "sensor-0042", t0, 0); !errors.Is(err, ErrUntrustedKey) || errors.Is(err, ErrBadSignature) {
		t.Fatalf("unknown key: %v", err)
	}
	s.KeyID = mustSigner(t, k1).KeyID() // claims a trusted key
	if _, err := trust.Verify(s, "sensor-0042", t0, 0); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other key claiming a trusted ID: %v", err)
	}
	if _, err := NewTrust(KeySet{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trust of no key: %v", err)
	}
}

func TestParsePublicKeysPEM(t *testing.T) {
	k1, k2 := edKey(1), ecKey(t)
	p1, _ := MarshalPublicKeyPEM(k1.Public())
	p2, _ := MarshalPublicKeyPEM(k2.Public())
	priv, _ := MarshalPrivateKeyPEM(k1)
	keys, err := ParsePublicKeysPEM(slices.Concat(p1, []byte("\n"), p2))
	if err != nil || len(keys) != 2 {
		t.Fatalf("bundle: %v, %d keys", err, len(keys))
	}
	for name, c := range map[string]struct {
		in   []byte
		want error
	}{
		"empty":              {nil, ErrMalformed},
		"same key twice":     {slices.Concat(p1, p1), ErrMalformed},
		"truncated bundle":   {slices.Concat(p1, p2[:len(p2)-10]), ErrMalformed},
		"text after the key": {slices.Concat(p1, []byte("trailing")), ErrMalformed},
		"private key inside": {slices.Concat(p1, priv), ErrUnsupportedKey},
	} {
		if _, err := ParsePublicKeysPEM(c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

// TestRotationModel: a server rotates its keys at random (add a key, make
// it current, retire an old one; serial raised each time) while a device
// sees a random, possibly replayed and reordered, subset of the published
// sets. The device's serial never decreases; it accepts a set exactly when
// it is newer and signed by a key it trusts, and then trusts exactly that
// set; a device that saw every set follows the server to the end.
func TestRotationModel(t *testing.T) {
	pool := make([]*Signer, 12)
	for i := range pool {
		pool[i] = mustSigner(t, edKey(byte(100+i)))
	}
	rapid.Check(t, func(rt *rapid.T) {
		next := 1
		held := []*Signer{pool[0]} // the server's keys
		var published []SignedKeySet
		var sets [][]*Signer
		publish := func() {
			sets = append(sets, slices.Clone(held))
			published = append(published, mustKeySet(t, int64(len(published)+1), held...))
		}
		publish()
		for range rapid.IntRange(1, 8).Draw(rt, "steps") {
			if next < len(pool) && (len(held) == 1 || rapid.Bool().Draw(rt, "add")) {
				held = append(held, pool[next])
				next++
			} else {
				held = held[1:] // the oldest key retires
			}
			publish()
		}
		keyIDs := func(ss []*Signer) []string {
			var ids []string
			for _, s := range ss {
				ids = append(ids, s.KeyID())
			}
			slices.Sort(ids)
			return ids
		}
		device := mustTrust(t, 0, pool[0].key)
		follower := device
		for i := range published {
			var err error
			if follower, err = follower.Update(published[i]); err != nil {
				rt.Fatalf("a device that saw every set refused set %d: %v", i+1, err)
			}
		}
		if !slices.Equal(follower.KeyIDs(), keyIDs(held)) {
			rt.Fatalf("follower trusts %v, server holds %v", follower.KeyIDs(), keyIDs(held))
		}
		for range rapid.IntRange(0, 20).Draw(rt, "observations") {
			i := rapid.IntRange(0, len(published)-1).Draw(rt, "set")
			before := device
			got, err := device.Update(published[i])
			serial := int64(i + 1)
			signedByTrusted := slices.ContainsFunc(sets[i], func(s *Signer) bool { return before.Trusts(s.KeyID()) })
			switch {
			case !signedByTrusted:
				if !errors.Is(err, ErrUntrustedKey) {
					rt.Fatalf("set %d signed by no trusted key: %v", serial, err)
				}
			case serial < before.Serial():
				if !errors.Is(err, ErrStaleKeySet) {
					rt.Fatalf("older set %d (trusted %d): %v", serial, before.Serial(), err)
				}
			case err != nil:
				rt.Fatalf("set %d (trusted %d): %v", serial, before.Serial(), err)
			default:
				if got.Serial() != serial || !slices.Equal(got.KeyIDs(), keyIDs(sets[i])) {
					rt.Fatalf("after set %d: serial %d keys %v", serial, got.Serial(), got.KeyIDs())
				}
				device = got
			}
			if device.Serial() < before.Serial() {
				rt.Fatalf("serial went from %d to %d", before.Serial(), device.Serial())
			}
		}
	})
}
