package otaserver_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otaflow/otaflow/internal/contract"
	"github.com/otaflow/otaflow/otaserver"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// signingKey is a key as an operator puts it into the Secret.
type signingKey struct {
	key crypto.Signer
	pem []byte
	id  string
}

func newSigningKey(t testing.TB, seed byte) signingKey {
	t.Helper()
	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return signingKeyOf(t, k)
}

func signingKeyOf(t testing.TB, k crypto.Signer) signingKey {
	t.Helper()
	p, err := assignment.MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	s, err := assignment.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{key: k, pem: p, id: s.KeyID()}
}

func TestParseSigningKeySecret(t *testing.T) {
	k1, k2 := newSigningKey(t, 1), newSigningKey(t, 2)
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k3 := signingKeyOf(t, p256)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tests := []struct {
		name    string
		data    map[string][]byte
		legacy  string
		serial  int64
		current string
		keys    int
		err     string // part of the error; "" when valid
	}{
		{name: "one key, the legacy Secret", data: map[string][]byte{"key.pem": k1.pem}, serial: 1, current: k1.id, keys: 1},
		{name: "legacy entry without .pem", data: map[string][]byte{"private": k1.pem}, legacy: "private", serial: 1, current: k1.id, keys: 1},
		{name: "key added, current by key ID", data: map[string][]byte{"key.pem": k1.pem, "next.pem": k2.pem, "current": []byte(k1.id), "serial": []byte("2")},
			serial: 2, current: k1.id, keys: 2},
		{name: "current by entry name, with newlines", data: map[string][]byte{"key.pem": k1.pem, "next.pem": k2.pem, "current": []byte("next.pem\n"), "serial": []byte("3\n")},
			serial: 3, current: k2.id, keys: 2},
		{name: "current key ID in upper case", data: map[string][]byte{"key.pem": k1.pem, "p256.pem": k3.pem, "current": []byte(strings.ToUpper(k3.id)), "serial": []byte("2")},
			serial: 2, current: k3.id, keys: 2},
		{name: "one key with current and serial", data: map[string][]byte{"next.pem": k2.pem, "current": []byte(k2.id), "serial": []byte("4")}, serial: 4, current: k2.id, keys: 1},
		{name: "current names a missing key", data: map[string][]byte{"key.pem": k1.pem, "next.pem": k2.pem, "current": []byte(k3.id), "serial": []byte("2")},
			err: `current "` + k3.id + `" names no key of the Secret`},
		{name: "current names a missing entry", data: map[string][]byte{"key.pem": k1.pem, "current": []byte("new.pem")}, err: `current "new.pem" names no key`},
		{name: "the same key twice", data: map[string][]byte{"a.pem": k1.pem, "b.pem": k1.pem, "current": []byte(k1.id), "serial": []byte("2")},
			err: `entries "a.pem" and "b.pem" hold the same key ` + k1.id},
		{name: "RSA key", data: map[string][]byte{"key.pem": k1.pem, "rsa.pem": rsaPEM, "current": []byte(k1.id), "serial": []byte("2")},
			err: `entry "rsa.pem": assignment: unsupported key type`},
		{name: "public key instead of private", data: map[string][]byte{"key.pem": mustPubPEM(t, k1.key.Public())}, err: `entry "key.pem": assignment: unsupported key type: PEM block "PUBLIC KEY"`},
		{name: "not PEM", data: map[string][]byte{"key.pem": []byte("hunter2")}, err: `entry "key.pem": assignment: malformed: no PEM block`},
		{name: "misspelt entry", data: map[string][]byte{"key.pem": k1.pem, "curent": []byte(k1.id)}, err: `unknown entry "curent"`},
		{name: "no key", data: map[string][]byte{"current": []byte(k1.id)}, err: "no key"},
		{name: "empty Secret", data: nil, err: "no key"},
		{name: "several keys, no current", data: map[string][]byte{"key.pem": k1.pem, "next.pem": k2.pem, "serial": []byte("2")}, err: "current is required with several keys"},
		{name: "several keys, no serial", data: map[string][]byte{"key.pem": k1.pem, "next.pem": k2.pem, "current": []byte(k1.id)}, err: "serial is required with several keys"},
		{name: "serial zero", data: map[string][]byte{"key.pem": k1.pem, "serial": []byte("0")}, err: `serial "0" is not an integer from 1 to`},
		{name: "serial not a number", data: map[string][]byte{"key.pem": k1.pem, "serial": []byte("two")}, err: `serial "two" is not an integer`},
		{name: "serial beyond 2^53", data: map[string][]byte{"key.pem": k1.pem, "serial": []byte("9007199254740992")}, err: "is not an integer from 1 to 9007199254740991"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			legacy := tt.legacy
			if legacy == "" {
				legacy = "key.pem"
			}
			set, err := otaserver.ParseSigningKeySecret(tt.data, legacy)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "PRIVATE KEY-----") {
					t.Fatal("the error echoes key bytes")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if set.Serial != tt.serial || set.Current.KeyID() != tt.current || len(set.Keys) != tt.keys {
				t.Fatalf("serial %d current %s keys %d, want %d %s %d", set.Serial, set.Current.KeyID(), len(set.Keys), tt.serial, tt.current, tt.keys)
			}
		})
	}
	// Every problem of a Secret is reported at once.
	_, err = otaserver.ParseSigningKeySecret(map[string][]byte{"key.pem": k1.pem, "rsa.pem": rsaPEM, "x": nil, "serial": []byte("-1")}, "key.pem")
	for _, part := range []string{`entry "rsa.pem"`, `unknown entry "x"`, `serial "-1"`} {
		if err == nil || !strings.Contains(err.Error(), part) {
			t.Errorf("error %v lacks %q", err, part)
		}
	}
}

func mustPubPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	p, err := assignment.MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// secretAt is the signing-key Secret's data at one step of a rotation.
func secretAt(serial string, current signingKey, keys ...signingKey) map[string][]byte {
	d := map[string][]byte{"current": []byte(current.id), "serial": []byte(serial)}
	for i, k := range keys {
		d["key-"+string(rune('a'+i))+".pem"] = k.pem
	}
	return d
}

// documentTrust follows the key set the server publishes, as a device does.
func documentTrust(t *testing.T, keys *otaserver.SigningKeys, trust *assignment.Trust) *assignment.Trust {
	t.Helper()
	b, err := keys.Document()
	if err != nil {
		t.Fatal(err)
	}
	var doc protov1.KeySetResponse
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	next, err := trust.Update(doc)
	if err != nil {
		t.Fatalf("a device following the rotation refuses the key set: %v", err)
	}
	return next
}

func TestSigningKeysRotation(t *testing.T) {
	reg := prometheus.NewRegistry()
	keys := otaserver.NewSigningKeys(reg)
	if _, err := keys.Sign(validAssignmentFor("d1")); err == nil {
		t.Fatal("an empty key set signs")
	}
	old, next := newSigningKey(t, 1), newSigningKey(t, 2)
	device, err := assignment.TrustKeys(old.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	offline := device
	steps := []struct {
		name     string
		data     map[string][]byte
		current  signingKey
		ids      []string
		serial   int64
		changed  bool
		refusals float64
	}{
		{"legacy Secret", map[string][]byte{"key.pem": old.pem}, old, []string{old.id}, 1, true, 0},
		{"resync of the same version", map[string][]byte{"key.pem": old.pem}, old, []string{old.id}, 1, false, 0},
		{"add: published, not signing", secretAt("2", old, old, next), old, []string{old.id, next.id}, 2, true, 0},
		{"refused: keys changed, serial kept", secretAt("2", old, old), old, []string{old.id, next.id}, 2, false, 1},
		{"refused: current names a missing key", secretAt("3", newSigningKey(t, 9), old, next), old, []string{old.id, next.id}, 2, false, 2},
		{"switch: the new key signs", secretAt("2", next, old, next), next, []string{next.id, old.id}, 2, true, 2},
		{"refused: serial went back", secretAt("1", next, next), next, []string{next.id, old.id}, 2, false, 3},
		{"retire: the old key leaves", secretAt("3", next, next), next, []string{next.id}, 3, true, 3},
	}
	for _, st := range steps {
		changed, err := keys.Update(st.data, "key.pem")
		if changed != st.changed || keys.KeyID() != st.current.id || !slices.Equal(keys.KeyIDs(), st.ids) || keys.Serial() != st.serial {
			t.Fatalf("%s: changed %t (%v), current %.8s, ids %v, serial %d", st.name, changed, err, keys.KeyID(), keys.KeyIDs(), keys.Serial())
		}
		if strings.HasPrefix(st.name, "refused") != (err != nil) {
			t.Fatalf("%s: error %v", st.name, err)
		}
		if got := metric(t, reg, "otaflow_ota_signing_key_set_refused_total"); got != st.refusals {
			t.Fatalf("%s: %v refusals counted, want %v", st.name, got, st.refusals)
		}
		if got, want := metric(t, reg, "otaflow_ota_signing_key_secret_refused"), map[bool]float64{true: 1, false: 0}[err != nil]; got != want {
			t.Fatalf("%s: refused gauge %v, want %v", st.name, got, want)
		}
		if got := metric(t, reg, "otaflow_ota_signing_key_set_serial"); got != float64(st.serial) {
			t.Fatalf("%s: serial gauge %v", st.name, got)
		}
		// A device that polls through every step follows the set and
		// verifies what is signed now.
		device = documentTrust(t, keys, device)
		s, err := keys.Sign(validAssignmentFor("d1"))
		if err != nil || s.KeyID != st.current.id {
			t.Fatalf("%s: signed by %.8s (%v), want %.8s", st.name, s.KeyID, err, st.current.id)
		}
		if _, err := device.Verify(s, "d1", time.Now(), time.Minute); err != nil {
			t.Fatalf("%s: the following device refuses the assignment: %v", st.name, err)
		}
	}
	if !slices.Equal(device.KeyIDs(), []string{next.id}) || device.Serial() != 3 {
		t.Fatalf("the following device ends with keys %v serial %d", device.KeyIDs(), device.Serial())
	}
	// A device that only trusts the retired key cannot follow.
	b, _ := keys.Document()
	var doc assignment.SignedKeySet
	_ = json.Unmarshal(b, &doc)
	if _, err := offline.Update(doc); !errors.Is(err, assignment.ErrUntrustedKey) {
		t.Fatalf("a device that missed the window: %v", err)
	}
}

// metric reads a counter or gauge of reg.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func validAssignmentFor(device string) assignment.Assignment {
	now := time.Now().UTC().Truncate(time.Second)
	digest := strings.Repeat("ab", 32)
	return assignment.Assignment{
		DeviceID: device, Rollout: "ns/ro", Release: "ns/fw", Version: "2.0.0", SecurityVersion: 1,
		PlainSHA256: digest, PlainSize: 10, EncryptedSHA256: digest, EncryptedSize: 200, Suite: "otaflow-enc/v1",
		BlobURL: "https://ota.example.com/v1/blobs/" + digest, KEM: "x25519", WrappedKey: make([]byte, 80),
		Nonce: strings.Repeat("0f", 16), IssuedAt: now, ExpiresAt: now.Add(time.Hour),
	}
}

// TestSigningKeysConcurrent: assignments signed while the set switches are
// each signed by a key of the set of before or of after, never by a mix,
// and the document always matches one whole set. Run with -race.
func TestSigningKeysConcurrent(t *testing.T) {
	keys := otaserver.NewSigningKeys(nil)
	a, b := newSigningKey(t, 1), newSigningKey(t, 2)
	if _, err := keys.Update(secretAt("1", a, a, b), "key.pem"); err != nil {
		t.Fatal(err)
	}
	trust, err := assignment.TrustKeys(a.key.Public(), b.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				s, err := keys.Sign(validAssignmentFor("d1"))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := trust.Verify(s, "d1", time.Now(), time.Minute); err != nil {
					t.Error(err)
					return
				}
				ids := keys.KeyIDs()
				if len(ids) != 2 || ids[0] == ids[1] {
					t.Errorf("key IDs %v", ids)
					return
				}
			}
		})
	}
	for i := 0; ctx.Err() == nil; i++ {
		cur := []signingKey{a, b}[i%2]
		if _, err := keys.Update(secretAt("1", cur, a, b), "key.pem"); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// TestKeysEndpoint: GET /v1/keys serves the set of the server's one key,
// GET /v1/info announces key rotation and lists it, both on the contract.
func TestKeysEndpoint(t *testing.T) {
	h := newHarness(t, 10)
	ctx := context.Background()
	get := func(path string) []byte {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, resp.Header)
		}
		return buf.Bytes()
	}
	var info protov1.Info
	if err := json.Unmarshal(get(protov1.PathInfo), &info); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Features, protov1.FeatureKeyRotation) || !slices.Equal(info.AssignmentKeyIDs, []string{h.signer.KeyID()}) {
		t.Fatalf("info %+v", info)
	}
	var doc protov1.KeySetResponse
	if err := json.Unmarshal(get(protov1.PathKeys), &doc); err != nil {
		t.Fatal(err)
	}
	trust, err := assignment.TrustKeys(h.pub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := trust.Update(doc)
	if err != nil || got.Serial() != 1 || !slices.Equal(got.KeyIDs(), []string{h.signer.KeyID()}) {
		t.Fatalf("key set: %v, %v", got, err)
	}
	req, _ := http.NewRequestWithContext(contract.Exempt(ctx, "a method the endpoint does not take"), http.MethodPost, h.srv.URL+protov1.PathKeys, nil)
	resp, err := (&http.Client{Transport: contract.Forward(nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodGet {
		t.Fatalf("POST: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}
