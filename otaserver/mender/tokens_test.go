package mender_test

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/otaflow/otaflow/otaserver/mender"
)

var t0 = time.Date(2026, 12, 2, 8, 30, 0, 0, time.UTC)

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

func newKeys(t *testing.T, data map[string][]byte) *mender.TokenKeys {
	t.Helper()
	k := mender.NewTokenKeys()
	if err := k.Replace(data); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestTokenKeysReplace(t *testing.T) {
	k1, k2 := randomKey(), randomKey()
	for _, tc := range []struct {
		name    string
		data    map[string][]byte
		current string
	}{
		{"one key", map[string][]byte{"a": k1}, "a"},
		{"one key named current", map[string][]byte{"a": k1, "current": []byte("a")}, "a"},
		{"two keys", map[string][]byte{"a": k1, "b": k2, "current": []byte("b")}, "b"},
		{"a short entry beside a key", map[string][]byte{"a": k1, "note": []byte("x")}, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if k := newKeys(t, tc.data); k.Current() != tc.current {
				t.Fatalf("current %q, want %q", k.Current(), tc.current)
			}
		})
	}
	keys := newKeys(t, map[string][]byte{"a": k1})
	tok, err := keys.IssueDevice("mender-1", "fleet", t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data map[string][]byte
		want string
	}{
		{"nothing", nil, "no key"},
		{"only short keys", map[string][]byte{"b": []byte("short"), "c": make([]byte, mender.MinTokenKeyBytes-1)}, "[b c]"},
		{"two keys, no current", map[string][]byte{"a": k1, "b": k2}, "no \"current\""},
		{"current names no key", map[string][]byte{"a": k1, "current": []byte("z")}, "\"z\""},
		{"current names a short key", map[string][]byte{"a": k1, "s": []byte("short"), "current": []byte("s")}, "\"s\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := keys.Replace(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %s", err, tc.want)
			}
			// The last good keys keep working.
			if keys.Current() != "a" {
				t.Fatalf("current %q after a refused Replace", keys.Current())
			}
			if id, _, err := keys.VerifyDevice(tok, at(t0)); err != nil || id != "mender-1" {
				t.Fatalf("token after a refused Replace: %v", err)
			}
		})
	}
	// Replace keeps its own copy of the keys.
	data := map[string][]byte{"c": randomKey()}
	kc := newKeys(t, data)
	tok, _ = kc.IssueDevice("mender-1", "fleet", t0, time.Hour)
	data["c"][0] ^= 1
	if _, _, err := kc.VerifyDevice(tok, at(t0)); err != nil {
		t.Fatalf("changing the Secret's bytes after Replace changed the key: %v", err)
	}
}

func TestTokenKeysEmpty(t *testing.T) {
	k := mender.NewTokenKeys()
	if _, err := k.IssueDevice("mender-1", "fleet", t0, time.Hour); !errors.Is(err, mender.ErrNoTokenKey) {
		t.Fatalf("issue device: %v", err)
	}
	if _, err := k.IssueLink(mender.Link{DeviceID: "d", Deployment: "x", Blob: "b", Expires: t0.Add(time.Hour)}, t0); !errors.Is(err, mender.ErrNoTokenKey) {
		t.Fatalf("issue link: %v", err)
	}
	other := newKeys(t, map[string][]byte{"a": randomKey()})
	tok, _ := other.IssueDevice("mender-1", "fleet", t0, time.Hour)
	if _, _, err := k.VerifyDevice(tok, at(t0)); err == nil {
		t.Fatal("an empty set verified a token")
	}
}

func TestDeviceTokenRoundTrip(t *testing.T) {
	k := newKeys(t, map[string][]byte{"a": randomKey()})
	tok, err := k.IssueDevice("mender-1", "fleet", t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		now  time.Time
		ok   bool
	}{
		{"now", t0, true},
		{"near the end", t0.Add(time.Hour - time.Second), true},
		{"within the clock skew allowed", t0.Add(time.Hour + 4*time.Second), true},
		{"expired", t0.Add(time.Hour + 6*time.Second), false},
		{"long expired", t0.Add(48 * time.Hour), false},
	} {
		id, ten, err := k.VerifyDevice(tok, at(tc.now))
		if tc.ok && (err != nil || id != "mender-1" || ten != "fleet") {
			t.Fatalf("%s: %q %q %v", tc.name, id, ten, err)
		}
		if !tc.ok && err == nil {
			t.Fatalf("%s: accepted", tc.name)
		}
	}
	if _, err := k.VerifyLink(tok, at(t0)); err == nil {
		t.Fatal("a device token verified as a download link")
	}
}

func TestLinkRoundTrip(t *testing.T) {
	k := newKeys(t, map[string][]byte{"a": randomKey()})
	want := mender.Link{DeviceID: "mender-1", Deployment: "c43983db-983b-4c7d-ca34-bbedacfe9743", Blob: strings.Repeat("b", 64), Expires: t0.Add(24 * time.Hour)}
	tok, err := k.IssueLink(want, t0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.VerifyLink(tok, at(t0.Add(time.Hour)))
	if err != nil || got.DeviceID != want.DeviceID || got.Deployment != want.Deployment || got.Blob != want.Blob || !got.Expires.Equal(want.Expires) {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := k.VerifyLink(tok, at(want.Expires.Add(time.Minute))); err == nil {
		t.Fatal("expired link accepted")
	}
	if _, _, err := k.VerifyDevice(tok, at(t0)); err == nil {
		t.Fatal("a download link verified as a device token")
	}
	for _, l := range []mender.Link{
		{DeviceID: "mender-1", Blob: "b", Expires: want.Expires},
		{DeviceID: "mender-1", Deployment: "x", Expires: want.Expires},
		{Deployment: "x", Blob: "b", Expires: want.Expires},
	} {
		tok, err := k.IssueLink(l, t0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.VerifyLink(tok, at(t0)); err == nil {
			t.Fatalf("link %+v accepted", l)
		}
	}
}

var rsaForTokens = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// TestForgedTokens: tokens with the claims of a genuine one but another
// signature, algorithm, key id or claim are refused.
func TestForgedTokens(t *testing.T) {
	key := randomKey()
	k := newKeys(t, map[string][]byte{"a": key})
	genuine, err := k.IssueDevice("mender-1", "fleet", t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsaForTokens()
	if err != nil {
		t.Fatal(err)
	}
	// resign signs the genuine token's claims, changed by edit, as method
	// with the key and kid given.
	resign := func(m jwt.SigningMethod, signKey any, kid any, edit func(jwt.MapClaims)) string {
		t.Helper()
		var c jwt.MapClaims
		if _, _, err := jwt.NewParser().ParseUnverified(genuine, &c); err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(c)
		}
		tk := jwt.NewWithClaims(m, c)
		if kid != nil {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(signKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The re-signing itself is sound: unchanged, it verifies.
	if _, _, err := k.VerifyDevice(resign(jwt.SigningMethodHS256, key, "a", nil), at(t0)); err != nil {
		t.Fatalf("re-signed token: %v", err)
	}
	hs := func(edit func(jwt.MapClaims)) string { return resign(jwt.SigningMethodHS256, key, "a", edit) }
	for name, tok := range map[string]string{
		"alg none":            resign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "a", nil),
		"HS384":               resign(jwt.SigningMethodHS384, key, "a", nil),
		"HS512":               resign(jwt.SigningMethodHS512, key, "a", nil),
		"RS256":               resign(jwt.SigningMethodRS256, rk, "a", nil),
		"other key":           resign(jwt.SigningMethodHS256, randomKey(), "a", nil),
		"unknown kid":         resign(jwt.SigningMethodHS256, key, "b", nil),
		"no kid":              resign(jwt.SigningMethodHS256, key, nil, nil),
		"kid not a string":    resign(jwt.SigningMethodHS256, key, 1, nil),
		"kid current":         resign(jwt.SigningMethodHS256, []byte("a"), "current", nil),
		"no exp":              hs(func(c jwt.MapClaims) { delete(c, "exp") }),
		"other issuer":        hs(func(c jwt.MapClaims) { c["iss"] = "someone" }),
		"no issuer":           hs(func(c jwt.MapClaims) { delete(c, "iss") }),
		"download audience":   hs(func(c jwt.MapClaims) { c["aud"] = []string{"otaflow-mender-download"} }),
		"no audience":         hs(func(c jwt.MapClaims) { delete(c, "aud") }),
		"no subject":          hs(func(c jwt.MapClaims) { delete(c, "sub") }),
		"not yet valid":       hs(func(c jwt.MapClaims) { c["nbf"] = t0.Add(time.Hour).Unix() }),
		"signature truncated": genuine[:len(genuine)-4],
		"signature removed":   genuine[:strings.LastIndex(genuine, ".")+1],
		"two parts":           genuine[:strings.LastIndex(genuine, ".")],
		"empty":               "",
	} {
		if id, _, err := k.VerifyDevice(tok, at(t0)); err == nil {
			t.Errorf("%s: accepted for %q", name, id)
		}
	}
}

// TestRotation: a new signing key keeps the tokens of the others valid
// while they are in the set.
func TestRotation(t *testing.T) {
	k1, k2 := randomKey(), randomKey()
	k := newKeys(t, map[string][]byte{"k1": k1})
	old, _ := k.IssueDevice("mender-1", "fleet", t0, time.Hour)
	link, _ := k.IssueLink(mender.Link{DeviceID: "mender-1", Deployment: "x", Blob: "b", Expires: t0.Add(time.Hour)}, t0)
	if err := k.Replace(map[string][]byte{"k1": k1, "k2": k2, "current": []byte("k2")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.VerifyDevice(old, at(t0)); err != nil {
		t.Fatalf("k1 token beside k2: %v", err)
	}
	if _, err := k.VerifyLink(link, at(t0)); err != nil {
		t.Fatalf("k1 link beside k2: %v", err)
	}
	fresh, _ := k.IssueDevice("mender-1", "fleet", t0, time.Hour)
	tk, _, err := jwt.NewParser().ParseUnverified(fresh, jwt.MapClaims{})
	if err != nil || tk.Header["kid"] != "k2" || tk.Header["alg"] != "HS256" {
		t.Fatalf("new token's header %v %v", tk.Header, err)
	}
	if err := k.Replace(map[string][]byte{"k2": k2}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.VerifyDevice(old, at(t0)); err == nil {
		t.Fatal("k1 token after k1 was removed")
	}
	if _, err := k.VerifyLink(link, at(t0)); err == nil {
		t.Fatal("k1 link after k1 was removed")
	}
	if _, _, err := k.VerifyDevice(fresh, at(t0)); err != nil {
		t.Fatalf("k2 token: %v", err)
	}
	// The same bytes under another name are another key id.
	if err := k.Replace(map[string][]byte{"k3": k2}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.VerifyDevice(fresh, at(t0)); err == nil {
		t.Fatal("k2 token after k2 was renamed")
	}
}

// TestVerifiedTokenRemembered: a token verified once is answered from
// memory, with the same device and tenant, until it expires; a token
// never verified is still parsed and refused when forged.
func TestVerifiedTokenRemembered(t *testing.T) {
	k := newKeys(t, map[string][]byte{"k1": randomKey()})
	tok, _ := k.IssueDevice("mender-1", "fleet", t0, time.Hour)
	for i := range 3 {
		id, tenant, err := k.VerifyDevice(tok, at(t0.Add(time.Duration(i)*time.Minute)))
		if err != nil || id != "mender-1" || tenant != "fleet" {
			t.Fatalf("check %d: %q %q %v", i, id, tenant, err)
		}
	}
	if _, _, err := k.VerifyDevice(tok, at(t0.Add(time.Hour+time.Minute))); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("remembered token after its expiry: %v, want expired", err)
	}
	forged := tok[:len(tok)-4] + "AAAA"
	if forged != tok {
		if _, _, err := k.VerifyDevice(forged, at(t0)); err == nil {
			t.Fatal("a forged signature verified")
		}
	}
}
