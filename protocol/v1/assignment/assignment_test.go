package assignment

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var sentinels = []error{ErrBadSignature, ErrExpired, ErrNotYetValid, ErrWrongDevice, ErrMalformed, ErrUnsupportedKey}

func checkSentinel(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("error %v also matches %v", err, s)
		}
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func edKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func validAssignment() Assignment {
	return Assignment{
		DeviceID:        "sensor-0042",
		Rollout:         "fleet/spring-update",
		Release:         "fleet/fw-2-1-0",
		Version:         "2.1.0",
		SecurityVersion: 7,
		PlainSHA256:     sum("plain"),
		PlainSize:       100000,
		EncryptedSHA256: sum("encrypted"),
		EncryptedSize:   100000 + 58 + 7*16,
		Suite:           "otaflow-enc/v1",
		BlobURL:         "https://ota.example.com/blobs/" + sum("encrypted"),
		KEM:             "x25519",
		WrappedKey:      bytes.Repeat([]byte{0xab}, 80),
		VendorSignature: "c2lnbmF0dXJl",
		Nonce:           "00112233445566778899aabbccddeeff",
		IssuedAt:        t0,
		ExpiresAt:       t0.Add(time.Hour),
	}
}

func mustSigner(t testing.TB, k crypto.Signer) *Signer {
	t.Helper()
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustVerifier(t testing.TB, k crypto.Signer) *Verifier {
	t.Helper()
	v, err := NewVerifier(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustSign(t testing.TB, s *Signer, a Assignment) Signed {
	t.Helper()
	sig, err := s.Sign(a)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func mustSignPayload(t testing.TB, s *Signer, payload []byte) Signed {
	t.Helper()
	sig, err := s.signPayload(payload)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// payloadWith returns the valid payload as a JSON object edited by edit.
func payloadWith(t *testing.T, edit func(m map[string]any)) []byte {
	t.Helper()
	b, err := json.Marshal(validAssignment())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerify(t *testing.T) {
	keys := map[string]func() crypto.Signer{
		"ed25519":    func() crypto.Signer { return edKey(1) },
		"ecdsa-p256": func() crypto.Signer { return ecKey(t) },
	}
	for name, newKey := range keys {
		t.Run(name, func(t *testing.T) {
			key := newKey()
			signer := mustSigner(t, key)
			other := mustSigner(t, map[string]crypto.Signer{"ed25519": edKey(2), "ecdsa-p256": ecKey(t)}[name])
			v := mustVerifier(t, key)
			good := mustSign(t, signer, validAssignment())
			skew := 2 * time.Minute

			tamperedPayload := good
			tamperedPayload.Payload = bytes.Replace(good.Payload, []byte(`"2.1.0"`), []byte(`"2.1.1"`), 1)
			tamperedSig := good
			tamperedSig.Signature = bytes.Clone(good.Signature)
			tamperedSig.Signature[len(tamperedSig.Signature)/2] ^= 1
			truncatedSig := good
			truncatedSig.Signature = good.Signature[:len(good.Signature)-1]
			otherKey := mustSign(t, other, validAssignment())
			otherKeyClaimingOurs := otherKey
			otherKeyClaimingOurs.KeyID = signer.KeyID()
			wrongKeyID := good
			wrongKeyID.KeyID = strings.Repeat("0", 64)
			noDomain := good
			noDomain.Signature = rawSign(t, key, good.Payload)

			a := validAssignment()
			a.Rollback = true
			rollback := mustSign(t, signer, a)
			a = validAssignment()
			a.Commit = true
			commit := mustSign(t, signer, a)

			padded := bytes.Clone(good.Payload)
			padded = append(padded, bytes.Repeat([]byte(" "), MaxPayloadSize-len(padded))...)

			tests := []struct {
				name   string
				s      Signed
				device string
				now    time.Time
				want   error // nil: valid
			}{
				{"valid", good, "sensor-0042", t0.Add(time.Minute), nil},
				{"valid rollback", rollback, "sensor-0042", t0, nil},
				{"valid commit", commit, "sensor-0042", t0, nil},
				{"commit for another device", commit, "sensor-0043", t0, ErrWrongDevice},
				{"expired commit", commit, "sensor-0042", t0.Add(time.Hour + skew), ErrExpired},
				{"valid at exactly 64 KiB", mustSignPayload(t, signer, padded), "sensor-0042", t0, nil},
				{"tampered payload", tamperedPayload, "sensor-0042", t0, ErrBadSignature},
				{"tampered signature", tamperedSig, "sensor-0042", t0, ErrBadSignature},
				{"truncated signature", truncatedSig, "sensor-0042", t0, ErrBadSignature},
				{"empty signature", Signed{Payload: good.Payload, KeyID: good.KeyID}, "sensor-0042", t0, ErrBadSignature},
				{"other key", otherKey, "sensor-0042", t0, ErrBadSignature},
				{"other key claiming our key ID", otherKeyClaimingOurs, "sensor-0042", t0, ErrBadSignature},
				{"wrong key ID", wrongKeyID, "sensor-0042", t0, ErrBadSignature},
				{"signature without domain prefix", noDomain, "sensor-0042", t0, ErrBadSignature},
				{"other device", good, "sensor-0043", t0, ErrWrongDevice},
				{"device ID differs in case", good, "SENSOR-0042", t0, ErrWrongDevice},
				{"expired", good, "sensor-0042", t0.Add(time.Hour + skew + time.Second), ErrExpired},
				{"expiry boundary", good, "sensor-0042", t0.Add(time.Hour + skew), ErrExpired},
				{"expired within skew", good, "sensor-0042", t0.Add(time.Hour + skew - time.Second), nil},
				{"not yet valid", good, "sensor-0042", t0.Add(-skew - time.Second), ErrNotYetValid},
				{"early within skew", good, "sensor-0042", t0.Add(-skew), nil},
				{"oversize payload", Signed{Payload: append(bytes.Clone(padded), ' '), Signature: good.Signature, KeyID: good.KeyID}, "sensor-0042", t0, ErrMalformed},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					got, err := v.Verify(tt.s, tt.device, tt.now, skew)
					if tt.want != nil {
						checkSentinel(t, err, tt.want)
						if !reflect.DeepEqual(got, Assignment{}) {
							t.Fatal("an assignment is returned with the error")
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					var want Assignment
					if err := json.Unmarshal(bytes.TrimSpace(tt.s.Payload), &want); err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) || got.DeviceID != "sensor-0042" {
						t.Fatalf("Verify = %+v, want %+v", got, want)
					}
				})
			}
		})
	}
}

// rawSign signs payload without the domain prefix.
func rawSign(t *testing.T, key crypto.Signer, payload []byte) []byte {
	t.Helper()
	var (
		sig []byte
		err error
	)
	switch key.Public().(type) {
	case ed25519.PublicKey:
		sig, err = key.Sign(rand.Reader, payload, crypto.Hash(0))
	default:
		d := sha256.Sum256(payload)
		sig, err = key.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// TestVerifyPayloads signs payloads Sign would refuse and checks that
// Verify refuses them after the signature passed.
func TestVerifyPayloads(t *testing.T) {
	key := edKey(1)
	signer := mustSigner(t, key)
	v := mustVerifier(t, key)
	good, err := json.Marshal(validAssignment())
	if err != nil {
		t.Fatal(err)
	}
	set := func(k string, val any) []byte { return payloadWith(t, func(m map[string]any) { m[k] = val }) }
	tests := []struct {
		name    string
		payload []byte
	}{
		{"not JSON", []byte("install everything")},
		{"empty", nil},
		{"JSON array", []byte(`[1,2]`)},
		{"truncated JSON", good[:len(good)-1]},
		{"trailing object", append(bytes.Clone(good), []byte(`{}`)...)},
		{"trailing garbage", append(bytes.Clone(good), 'x')},
		{"unknown field", set("installNow", true)},
		{"key in other case", payloadWith(t, func(m map[string]any) { m["DeviceID"] = m["deviceID"]; delete(m, "deviceID") })},
		{"duplicate key", bytes.Replace(good, []byte(`{"deviceID":"sensor-0042",`), []byte(`{"deviceID":"sensor-0042","deviceID":"sensor-0043",`), 1)},
		{"null field", set("securityVersion", nil)},
		{"wrong type", set("plainSize", "100000")},
		{"empty device ID", set("deviceID", "")},
		{"rollout without namespace", set("rollout", "spring-update")},
		{"release with two slashes", set("release", "a/b/c")},
		{"upper-case digest", set("plainSHA256", strings.ToUpper(sum("plain")))},
		{"short digest", set("encryptedSHA256", sum("x")[:63])},
		{"negative security version", set("securityVersion", -1)},
		{"negative plain size", set("plainSize", -1)},
		{"encrypted smaller than plain", set("encryptedSize", 99999)},
		{"other suite", set("suite", "otaflow-enc/v2")},
		{"relative blob URL", set("blobURL", "/blobs/x")},
		{"file blob URL", set("blobURL", "file:///etc/passwd")},
		{"unknown KEM", set("kem", "rsa")},
		{"wrapped key of wrong size", set("wrappedKey", bytes.Repeat([]byte{1}, 113))},
		{"vendor signature not base64", set("vendorSignature", "not base64!")},
		{"short nonce", set("nonce", "0011")},
		{"nonce not hex", set("nonce", strings.Repeat("z", 32))},
		{"zero issuedAt", set("issuedAt", time.Time{})},
		{"expiresAt before issuedAt", set("expiresAt", t0.Add(-time.Second))},
		{"bad time", set("issuedAt", "yesterday")},
		{"commit and rollback", payloadWith(t, func(m map[string]any) { m["commit"] = true; m["rollback"] = true })},
		{"commit not a boolean", set("commit", "true")},
		{"commit null", set("commit", nil)},
		{"commit in other case", set("Commit", true)},
		{"duplicate commit", bytes.Replace(good, []byte(`{"deviceID":`), []byte(`{"commit":false,"commit":true,"deviceID":`), 1)},
	}
	for _, f := range strings.Fields(requiredFields) {
		tests = append(tests, struct {
			name    string
			payload []byte
		}{"missing " + f, payloadWith(t, func(m map[string]any) { delete(m, f) })})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSignPayload(t, signer, tt.payload)
			got, err := v.Verify(s, "sensor-0042", t0, time.Minute)
			checkSentinel(t, err, ErrMalformed)
			if !reflect.DeepEqual(got, Assignment{}) {
				t.Fatal("an assignment is returned with the error")
			}
		})
	}
	// The edits above are refused for what they change, not because the
	// helper breaks the payload.
	if _, err := v.Verify(mustSignPayload(t, signer, payloadWith(t, func(map[string]any) {})), "sensor-0042", t0, 0); err != nil {
		t.Fatalf("unedited payload: %v", err)
	}
}

// TestRequiredFields keeps requiredFields and optionalFields in step with
// the struct: every JSON key is listed once, and exactly the omitempty
// ones (rollback, commit) are optional.
func TestRequiredFields(t *testing.T) {
	var required, optional []string
	typ := reflect.TypeFor[Assignment]()
	for i := range typ.NumField() {
		name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if opts == "omitempty" {
			optional = append(optional, name)
		} else {
			required = append(required, name)
		}
	}
	for _, c := range []struct {
		name       string
		list, tags []string
	}{{"requiredFields", strings.Fields(requiredFields), required}, {"optionalFields", strings.Fields(optionalFields), optional}} {
		slices.Sort(c.list)
		slices.Sort(c.tags)
		if !slices.Equal(c.list, c.tags) {
			t.Fatalf("%s = %v, struct has %v", c.name, c.list, c.tags)
		}
	}
}

// TestPayloadEncoding pins the serialization: an assignment without
// rollback or commit encodes exactly as before those flags existed (so
// payloads, signatures and committed seeds stay byte-identical), and each
// flag adds only its own key.
func TestPayloadEncoding(t *testing.T) {
	const base = `{"deviceID":"sensor-0042","rollout":"fleet/spring-update","release":"fleet/fw-2-1-0","version":"2.1.0",` +
		`"securityVersion":7,"plainSHA256":"` + "%s" + `","plainSize":100000,"encryptedSHA256":"` + "%s" + `",` +
		`"encryptedSize":100170,"suite":"otaflow-enc/v1","blobURL":"https://ota.example.com/blobs/` + "%s" + `","kem":"x25519",` +
		`"wrappedKey":"` + "%s" + `","vendorSignature":"c2lnbmF0dXJl",%s"nonce":"00112233445566778899aabbccddeeff",` +
		`"issuedAt":"2026-03-01T12:00:00Z","expiresAt":"2026-03-01T13:00:00Z"}`
	wrapped := strings.Repeat("q6ur", 26) + "q6s=" // 80 bytes of 0xab
	want := func(flags string) string {
		return fmt.Sprintf(base, sum("plain"), sum("encrypted"), sum("encrypted"), wrapped, flags)
	}
	for _, c := range []struct {
		name  string
		edit  func(*Assignment)
		flags string
	}{
		{"install", func(*Assignment) {}, ""},
		{"rollback", func(a *Assignment) { a.Rollback = true }, `"rollback":true,`},
		{"commit", func(a *Assignment) { a.Commit = true }, `"commit":true,`},
	} {
		a := validAssignment()
		c.edit(&a)
		got, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want(c.flags) {
			t.Errorf("%s payload:\n got %s\nwant %s", c.name, got, want(c.flags))
		}
	}
}

func TestSign(t *testing.T) {
	signer := mustSigner(t, edKey(1))
	tests := []struct {
		name string
		edit func(*Assignment)
		want error // nil: valid
	}{
		{"valid", func(*Assignment) {}, nil},
		{"p256 wrapped key", func(a *Assignment) { a.KEM = "p256"; a.WrappedKey = make([]byte, 113) }, nil},
		{"no vendor signature", func(a *Assignment) { a.VendorSignature = "" }, nil},
		{"upper-case device nonce", func(a *Assignment) { a.Nonce = "ABCDEF0123456789" }, nil},
		{"commit", func(a *Assignment) { a.Commit = true }, nil},
		{"commit and rollback", func(a *Assignment) { a.Commit, a.Rollback = true, true }, ErrMalformed},
		{"missing device", func(a *Assignment) { a.DeviceID = "" }, ErrMalformed},
		{"missing nonce", func(a *Assignment) { a.Nonce = "" }, ErrMalformed},
		{"missing wrapped key", func(a *Assignment) { a.WrappedKey = nil }, ErrMalformed},
		{"missing expiry", func(a *Assignment) { a.ExpiresAt = time.Time{} }, ErrMalformed},
		{"oversize payload", func(a *Assignment) {
			a.VendorSignature = strings.Repeat("AAAA", MaxPayloadSize/4)
		}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := validAssignment()
			tt.edit(&a)
			s, err := signer.Sign(a)
			if tt.want != nil {
				checkSentinel(t, err, tt.want)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.KeyID != signer.KeyID() {
				t.Fatalf("KeyID = %q, want %q", s.KeyID, signer.KeyID())
			}
			if !ed25519.Verify(edKey(1).Public().(ed25519.PublicKey), append([]byte("otaflow-assignment/v1\n"), s.Payload...), s.Signature) {
				t.Fatal("signature is not over the domain-separated payload")
			}
		})
	}
}

// TestSignedJSON checks the wire form: byte fields travel as base64 and a
// decoded Signed verifies.
func TestSignedJSON(t *testing.T) {
	key := edKey(3)
	s := mustSign(t, mustSigner(t, key), validAssignment())
	wire, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(wire, &m); err != nil {
		t.Fatalf("wire form is not an object of strings: %v", err)
	}
	if len(m) != 3 || m["keyID"] != s.KeyID || m["payload"] == "" || m["signature"] == "" {
		t.Fatalf("wire form = %s", wire)
	}
	var back Signed
	if err := json.Unmarshal(wire, &back); err != nil {
		t.Fatal(err)
	}
	if _, err := mustVerifier(t, key).Verify(back, "sensor-0042", t0, 0); err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(s.Payload, &p); err != nil {
		t.Fatal(err)
	}
	if _, ok := p["wrappedKey"].(string); !ok {
		t.Fatalf("wrappedKey is %T in the payload, want a base64 string", p["wrappedKey"])
	}
	for _, k := range []string{"rollback", "commit"} {
		if _, ok := p[k]; ok {
			t.Fatalf("%s written although false", k)
		}
	}
}

func TestKeyID(t *testing.T) {
	for _, key := range []crypto.Signer{edKey(1), ecKey(t)} {
		der, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(der)
		want := hex.EncodeToString(h[:])
		if got := mustSigner(t, key).KeyID(); got != want {
			t.Errorf("Signer.KeyID = %s, want %s", got, want)
		}
		if got := mustVerifier(t, key).KeyID(); got != want {
			t.Errorf("Verifier.KeyID = %s, want %s", got, want)
		}
	}
	if mustSigner(t, edKey(1)).KeyID() == mustSigner(t, edKey(2)).KeyID() {
		t.Fatal("different keys share a key ID")
	}
}

func TestUnsupportedKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]crypto.Signer{"rsa": rsaKey, "p384": p384, "nil": nil} {
		if _, err := NewSigner(k); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("NewSigner(%s) = %v, want ErrUnsupportedKey", name, err)
		}
		if k == nil {
			continue
		}
		if _, err := NewVerifier(k.Public()); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("NewVerifier(%s) = %v, want ErrUnsupportedKey", name, err)
		}
		if _, err := MarshalPrivateKeyPEM(k); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("MarshalPrivateKeyPEM(%s) = %v, want ErrUnsupportedKey", name, err)
		}
		if _, err := MarshalPublicKeyPEM(k.Public()); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("MarshalPublicKeyPEM(%s) = %v, want ErrUnsupportedKey", name, err)
		}
	}
	if _, err := NewVerifier(ed25519.PublicKey(make([]byte, 31))); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("NewVerifier(31-byte Ed25519 key) = %v", err)
	}
	if _, err := NewVerifier(nil); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("NewVerifier(nil) = %v", err)
	}
}

func TestNegativeSkew(t *testing.T) {
	key := edKey(1)
	s := mustSign(t, mustSigner(t, key), validAssignment())
	if _, err := mustVerifier(t, key).Verify(s, "sensor-0042", t0, -time.Second); err == nil {
		t.Fatal("negative skew accepted")
	}
}

func TestNewNonce(t *testing.T) {
	a, err := NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewNonce()
	if a == b || !isNonce(a) || len(a) != 32 {
		t.Fatalf("NewNonce = %q, %q", a, b)
	}
}
