package mender_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/mender"
)

// TestAuthKeyKinds: an auth request signed with each kind of key
// mender-client makes registers the device through its grant and yields
// a device token as the raw body.
func TestAuthKeyKinds(t *testing.T) {
	h := newHarness(t)
	for _, kind := range []string{"rsa", "ecdsa-p256", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			c := h.newClient(kind)
			r := c.auth(tenantOK)
			if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/jwt" {
				t.Fatalf("auth: %v %v", r, r.header)
			}
			id, ten, err := h.tokens.VerifyDevice(string(r.body), h.clock.Now)
			if err != nil || id != c.id || ten != tenant {
				t.Fatalf("token for %q in %q: %v (want %s)", id, ten, err, c.id)
			}
			if len(c.id) != len("mender-")+40 {
				t.Fatalf("device ID %q", c.id)
			}
			d := h.device(c.id)
			_, der := publicPEM(t, c.signer.Public())
			if d.KEM != mender.KEMPrefix+kind || d.Namespace != tenant || d.Enrollment != enrollment || d.Type != deviceType ||
				d.Labels["region"] != "eu" || len(d.Labels) != 1 || !bytes.Equal(d.PublicKey, der) {
				t.Fatalf("registered %+v", d)
			}
		})
	}
}

// TestAuthRegisteredDevice: a registered device gets a token whatever
// its enrollment says now, as natively enrolled devices keep working.
func TestAuthRegisteredDevice(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	seq := h.device(c.id).Seq
	h.auth.set(func(f *fakeAuth) { f.refuse = "the DeviceEnrollment expired" })
	for _, tt := range []string{tenantOK, tenantPending, "suspended-tenant"} {
		r := c.auth(tt)
		if r.status != http.StatusOK {
			t.Fatalf("registered device with tenant token %q: %v", tt, r)
		}
		if id, _, err := h.tokens.VerifyDevice(string(r.body), h.clock.Now); err != nil || id != c.id {
			t.Fatalf("token: %q %v", id, err)
		}
	}
	if d := h.device(c.id); d.Seq != seq {
		t.Fatalf("authenticating again re-enrolled the device (seq %d → %d)", seq, d.Seq)
	}
	// A new device is refused with the reason.
	r := h.newClient().auth(tenantOK)
	if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "expired") || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("new device while refused: %v", r)
	}
}

// TestAuthRefusals: every way an auth request is refused, and that none
// of them registers the device.
func TestAuthRefusals(t *testing.T) {
	h := newHarness(t)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakPEM, _ := publicPEM(t, weak.Public())
	body := func(idData, pubkey string) []byte {
		b, _ := json.Marshal(mender.AuthRequest{IDData: idData, Pubkey: pubkey, TenantToken: tenantOK})
		return b
	}
	other := h.newClient()
	cases := []struct {
		name string
		make func(c *client) ([]byte, string)
		want int
	}{
		{"bad signature", func(c *client) ([]byte, string) {
			b := c.authBody(tenantOK)
			return b, signature(t, c.signer, append(slices.Clone(b), ' '))
		}, 401},
		{"signature by another key", func(c *client) ([]byte, string) {
			b := c.authBody(tenantOK)
			return b, signature(t, other.signer, b)
		}, 401},
		{"no signature", func(c *client) ([]byte, string) { return c.authBody(tenantOK), "" }, 401},
		{"signature not base64", func(c *client) ([]byte, string) { return c.authBody(tenantOK), "%%%" }, 401},
		{"unknown tenant token", func(c *client) ([]byte, string) {
			b := c.authBody("nope")
			return b, signature(t, c.signer, b)
		}, 401},
		{"pending", func(c *client) ([]byte, string) {
			b := c.authBody(tenantPending)
			return b, signature(t, c.signer, b)
		}, 401},
		{"no tenant token, not preauthorized", func(c *client) ([]byte, string) {
			b := c.authBody("")
			return b, signature(t, c.signer, b)
		}, 401},
		{"malformed body", func(c *client) ([]byte, string) {
			b := []byte(`{"id_data":`)
			return b, signature(t, c.signer, b)
		}, 400},
		{"id_data not an object", func(c *client) ([]byte, string) {
			b := body(`["mac"]`, c.pem)
			return b, signature(t, c.signer, b)
		}, 400},
		{"id_data empty", func(c *client) ([]byte, string) {
			b := body("", c.pem)
			return b, signature(t, c.signer, b)
		}, 400},
		{"bad PEM", func(c *client) ([]byte, string) {
			b := body(`{"mac":"x"}`, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
			return b, signature(t, c.signer, b)
		}, 400},
		{"RSA 1024", func(c *client) ([]byte, string) {
			b := body(`{"mac":"x"}`, weakPEM)
			return b, signature(t, weak, b)
		}, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := h.newClient()
			b, sig := tc.make(c)
			r := h.postAuth(b, sig)
			if r.status != tc.want {
				t.Fatalf("%v, want %d", r, tc.want)
			}
			if _, err := h.store.Device(context.Background(), c.id); !errors.Is(err, devicestore.ErrNotFound) {
				t.Fatalf("device registered after a refusal: %v", err)
			}
		})
	}
	t.Run("preauthorized key", func(t *testing.T) {
		c := h.newClient()
		h.auth.set(func(f *fakeAuth) { f.preauth[c.id] = true })
		if r := c.auth(""); r.status != http.StatusOK {
			t.Fatalf("preauthorized key without tenant token: %v", r)
		}
		if d := h.device(c.id); d.Namespace != tenant {
			t.Fatalf("registered %+v", d)
		}
	})
	t.Run("register refused", func(t *testing.T) {
		h.auth.set(func(f *fakeAuth) { f.refuse = "the device is not on the allowlist" })
		defer h.auth.set(func(f *fakeAuth) { f.refuse = "" })
		c := h.newClient()
		if r := c.auth(tenantOK); r.status != 401 || !strings.Contains(string(r.body), "allowlist") {
			t.Fatalf("%v", r)
		}
		if _, err := h.store.Device(context.Background(), c.id); !errors.Is(err, devicestore.ErrNotFound) {
			t.Fatalf("registered: %v", err)
		}
	})
	t.Run("quota", func(t *testing.T) {
		// The preauthorized device is registered by now.
		n, err := h.store.EnrolledThrough(context.Background(), tenant, enrollment)
		if err != nil || n == 0 {
			t.Fatalf("enrolled through %s: %d %v", enrollment, n, err)
		}
		h.auth.set(func(f *fakeAuth) { f.max = n })
		c := h.newClient()
		if r := c.auth(tenantOK); r.status != 401 || !strings.Contains(string(r.body), "maximum") {
			t.Fatalf("over quota: %v", r)
		}
		h.auth.set(func(f *fakeAuth) { f.max = n + 1 })
		if r := c.auth(tenantOK); r.status != 200 {
			t.Fatalf("within quota: %v", r)
		}
	})
}

// TestAuthFailuresThrottled: bad signatures and unknown tenant tokens
// count against the address; past the burst it is answered 429, before
// even a good request is read. Pending devices do not count.
func TestAuthFailuresThrottled(t *testing.T) {
	h := newHarness(t, func(cfg *otaserver.Config, _ *mender.Config) { cfg.EnrollFailureBurst = 3 })
	c := h.newClient()
	for range 5 { // pending: asked again at the client's retry interval
		if r := c.auth(tenantPending); r.status != 401 {
			t.Fatalf("pending: %v", r)
		}
	}
	bad := func() resp {
		b := c.authBody(tenantOK)
		return h.postAuth(b, signature(t, h.newClient().signer, b))
	}
	if r := bad(); r.status != 401 {
		t.Fatalf("bad signature: %v", r)
	}
	if r := c.auth("unknown-tenant"); r.status != 401 {
		t.Fatalf("unknown tenant: %v", r)
	}
	if r := bad(); r.status != 401 {
		t.Fatalf("bad signature: %v", r)
	}
	r := c.auth(tenantOK)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("after 3 failures: %v %v", r, r.header)
	}
	if _, err := h.store.Device(context.Background(), c.id); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("a throttled request registered the device: %v", err)
	}
	h.clock.advance(2 * time.Minute) // one more attempt a minute
	if r := c.auth(tenantOK); r.status != 200 {
		t.Fatalf("after waiting: %v", r)
	}
}

// TestAuthWithoutTokenKey: without a token key the server cannot answer
// with a token, and says when to retry.
func TestAuthWithoutTokenKey(t *testing.T) {
	h := newHarness(t, func(_ *otaserver.Config, f *mender.Config) { f.Keys = mender.NewTokenKeys() })
	r := h.newClient().auth(tenantOK)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "60" {
		t.Fatalf("%v %v", r, r.header)
	}
}

// forge re-signs a token's claims with another method, key and kid.
func forge(t *testing.T, tok string, m jwt.SigningMethod, key any, kid string) string {
	t.Helper()
	var c jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	f := jwt.NewWithClaims(m, c)
	f.Header["kid"] = kid
	s, err := f.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDeviceTokens: what a device token must be to authenticate an API
// call.
func TestDeviceTokens(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	good := c.token
	call := func(tok string) resp {
		t.Helper()
		cc := *c
		cc.token = tok
		return cc.next(artifactOld, deviceType)
	}
	nd := c.offered()
	if r := call(good); r.status != http.StatusOK {
		t.Fatalf("good token: %v", r)
	}
	link := nd.Artifact.Source.URI[strings.LastIndex(nd.Artifact.Source.URI, "/")+1:]
	otherKeys := mender.NewTokenKeys()
	if err := otherKeys.Replace(map[string][]byte{"k9": randomKey()}); err != nil {
		t.Fatal(err)
	}
	foreign, _ := otherKeys.IssueDevice(c.id, tenant, h.clock.Now(), time.Hour)
	sameKidOtherKey := mender.NewTokenKeys()
	if err := sameKidOtherKey.Replace(map[string][]byte{"k1": randomKey()}); err != nil {
		t.Fatal(err)
	}
	wrongKey, _ := sameKidOtherKey.IssueDevice(c.id, tenant, h.clock.Now(), time.Hour)
	unregistered, _ := h.tokens.IssueDevice("mender-0000000000000000000000000000000000000000", tenant, h.clock.Now(), time.Hour)
	otherTenant, _ := h.tokens.IssueDevice(c.id, "other", h.clock.Now(), time.Hour)
	rsaKey, err := rsa3072()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, tok string }{
		{"unknown kid", foreign},
		{"known kid, other key", wrongKey},
		{"alg none", forge(t, good, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "k1")},
		{"HS384", forge(t, good, jwt.SigningMethodHS384, h.k1, "k1")},
		{"RS256", forge(t, good, jwt.SigningMethodRS256, rsaKey, "k1")},
		{"download link", link},
		// The store cannot delete a device: a token for an ID never
		// registered takes the same path as one of a deleted device.
		{"device not registered", unregistered},
		{"other tenant", otherTenant},
		{"garbage", "not.a.token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if r := call(tc.tok); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%v", r)
			}
		})
	}
	t.Run("no header", func(t *testing.T) {
		if r := h.do(http.MethodPost, pathNextV2, "", []byte(`{}`)); r.status != 401 {
			t.Fatalf("%v", r)
		}
	})
	t.Run("device token as download link", func(t *testing.T) {
		u := nd.Artifact.Source.URI[:strings.LastIndex(nd.Artifact.Source.URI, "/")+1] + good
		if r := h.do(http.MethodGet, u, "", nil); r.status != http.StatusForbidden {
			t.Fatalf("%v", r)
		}
	})
	t.Run("rotation", func(t *testing.T) {
		k2 := randomKey()
		if err := h.tokens.Replace(map[string][]byte{"k1": h.k1, "k2": k2, mender.TokenKeyCurrent: []byte("k2")}); err != nil {
			t.Fatal(err)
		}
		if r := call(good); r.status != http.StatusOK {
			t.Fatalf("k1 token while k1 is kept: %v", r)
		}
		fresh := h.newClient().login()
		tk, _, err := jwt.NewParser().ParseUnverified(fresh.token, jwt.MapClaims{})
		if err != nil || tk.Header["kid"] != "k2" {
			t.Fatalf("new token's kid %v (%v), want k2", tk.Header["kid"], err)
		}
		if err := h.tokens.Replace(map[string][]byte{"k2": k2}); err != nil {
			t.Fatal(err)
		}
		if r := call(good); r.status != http.StatusUnauthorized {
			t.Fatalf("k1 token after k1 was removed: %v", r)
		}
		if r := fresh.next(artifactOld, deviceType); r.status != http.StatusOK {
			t.Fatalf("k2 token: %v", r)
		}
	})
	t.Run("expired", func(t *testing.T) {
		c := h.newClient().login()
		h.clock.advance(time.Hour + time.Minute) // TokenTTL defaults to 1h
		if r := c.next(artifactNew, deviceType); r.status != http.StatusUnauthorized {
			t.Fatalf("expired token: %v", r)
		}
		if r := c.login().next(artifactNew, deviceType); r.status != http.StatusNoContent {
			t.Fatalf("after authenticating again: %v", r)
		}
	})
}

// TestNextVariants: v2 POST, v1 POST and v1 GET are one check-in, and
// answer the same deployment.
func TestNextVariants(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	nd := c.offered()
	if nd.ID != h.installID() || nd.Artifact.Name != artifactNew || !slices.Equal(nd.Artifact.DeviceTypes, []string{deviceType}) {
		t.Fatalf("deployment %+v", nd)
	}
	if !strings.HasPrefix(nd.Artifact.Source.URI, h.srv.URL+"/api/devices/v1/deployments/device/artifacts/") {
		t.Fatalf("source %q", nd.Artifact.Source.URI)
	}
	exp, err := time.Parse(time.RFC3339, nd.Artifact.Source.Expire)
	if err != nil || !exp.Equal(h.clock.Now().Add(linkTTL)) {
		t.Fatalf("expire %q (%v), want %s", nd.Artifact.Source.Expire, err, h.clock.Now().Add(linkTTL))
	}
	rec := h.record(c.id)
	if rec.State != rollout.StateOffered || rec.Version != "2.0.0" || rec.PreviousVersion != "1.0.0" || rec.OfferBoot != "mender" {
		t.Fatalf("record %+v", rec)
	}
	if d := h.device(c.id); d.Version != "1.0.0" {
		t.Fatalf("running version %q, want 1.0.0 (release-1's)", d.Version)
	}
	q := url.Values{"artifact_name": {artifactOld}, "device_type": {deviceType}}
	for _, r := range []resp{
		h.do(http.MethodPost, pathNextV1, c.token, []byte(`{"artifact_name":"`+artifactOld+`","device_type":"`+deviceType+`"}`)),
		h.do(http.MethodGet, pathNextV1+"?"+q.Encode(), c.token, nil),
		c.next(artifactOld, deviceType),
	} {
		var again mender.NextDeployment
		if r.status != 200 || json.Unmarshal(r.body, &again) != nil {
			t.Fatalf("resend: %v", r)
		}
		if again.ID != nd.ID || again.Artifact.Name != nd.Artifact.Name || !slices.Equal(again.Artifact.DeviceTypes, nd.Artifact.DeviceTypes) || again.Artifact.Source.URI == "" {
			t.Fatalf("resend %+v, first %+v", again, nd)
		}
	}
	if rec := h.record(c.id); rec.State != rollout.StateOffered {
		t.Fatalf("after resends %+v", rec)
	}
	// Each variant answers 204 to a device running the release.
	d := h.newClient().login()
	qq := url.Values{"artifact_name": {artifactNew}, "device_type": {deviceType}}
	for _, r := range []resp{
		d.next(artifactNew, deviceType),
		h.do(http.MethodPost, pathNextV1, d.token, []byte(`{"artifact_name":"`+artifactNew+`","device_type":"`+deviceType+`"}`)),
		h.do(http.MethodGet, pathNextV1+"?"+qq.Encode(), d.token, nil),
	} {
		if r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("device on the release: %v", r)
		}
	}
	if dev := h.device(d.id); dev.Version != "2.0.0" {
		t.Fatalf("running version %q, want 2.0.0 (release-2's)", dev.Version)
	}
	if rec := h.record(d.id); rec.State != rollout.StateCurrent {
		t.Fatalf("device on the release: record %+v", rec)
	}
}

// TestNextUnknownArtifact: an artifact no release has (a factory image)
// ranks below every release: the device is offered the rollout's.
func TestNextUnknownArtifact(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	r := c.next("factory-image 1", deviceType)
	if r.status != http.StatusOK {
		t.Fatalf("%v", r)
	}
	if d := h.device(c.id); d.Version != "0.0.0-unreleased+factory-image-1" {
		t.Fatalf("version %q", d.Version)
	}
	if rec := h.record(c.id); rec.State != rollout.StateOffered || rec.PreviousVersion != "0.0.0-unreleased+factory-image-1" {
		t.Fatalf("record %+v", rec)
	}
	// The rollout's own artifact name maps to its version: nothing to do.
	if r := h.newClient().login().next(artifactNew, deviceType); r.status != http.StatusNoContent {
		t.Fatalf("on release-2: %v", r)
	}
	// A semantic version that is no release's artifact name is taken as is.
	e := h.newClient().login()
	if r := e.next("1.5.0", deviceType); r.status != http.StatusOK {
		t.Fatalf("on 1.5.0: %v", r)
	}
	if rec := h.record(e.id); rec.PreviousVersion != "1.5.0" {
		t.Fatalf("record %+v", rec)
	}
}

// TestNextSkips: a release mender-client cannot install lets go of the
// device with the reason.
func TestNextSkips(t *testing.T) {
	t.Run("raw release", func(t *testing.T) {
		h := newHarness(t)
		h.release = h.makeRelease("fw-2", "2.0.0", otav1.FormatRaw, h.image, "")
		h.rebuild()
		c := h.newClient().login()
		if r := c.next(artifactOld, deviceType); r.status != http.StatusNoContent {
			t.Fatalf("%v", r)
		}
		if rec := h.record(c.id); rec.State != rollout.StateSkipped || !strings.Contains(rec.Reason, "not a Mender artifact") {
			t.Fatalf("record %+v", rec)
		}
	})
	t.Run("other device type", func(t *testing.T) {
		h := newHarness(t)
		c := h.newClient().login()
		if r := c.next(artifactOld, "other-board"); r.status != http.StatusNoContent {
			t.Fatalf("%v", r)
		}
		rec := h.record(c.id)
		if rec.State != rollout.StateSkipped || !strings.Contains(rec.Reason, "not compatible with device type other-board") {
			t.Fatalf("record %+v", rec)
		}
	})
}

// TestNextBadRequests: what next refuses, and paths outside the API.
func TestNextBadRequests(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"v2 without artifact_name", "POST", pathNextV2, `{"device_provides":{"device_type":"sensor-v1"}}`, 400},
		{"v2 without device_type", "POST", pathNextV2, `{"device_provides":{"artifact_name":"release-1"}}`, 400},
		{"v2 not JSON", "POST", pathNextV2, `{`, 400},
		{"v1 without device_type", "POST", pathNextV1, `{"artifact_name":"release-1"}`, 400},
		{"v1 GET without artifact_name", "GET", pathNextV1 + "?device_type=sensor-v1", "", 400},
		{"v1 GET without device_type", "GET", pathNextV1 + "?artifact_name=release-1", "", 400},
		{"unknown path", "GET", "/api/devices/v1/nothing/here", "", 404},
		{"wrong method is 404", "GET", pathAuth, "", 404},
		{"v2 GET is 404", "GET", pathNextV2, "", 404},
		{"status of no deployment", "PUT", deploymentPath("00000000-0000-0000-0000-000000000000", "status"), `{"status":"downloading"}`, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b []byte
			if tc.body != "" {
				b = []byte(tc.body)
			}
			if r := h.do(tc.method, tc.path, c.token, b); r.status != tc.want {
				t.Fatalf("%v, want %d", r, tc.want)
			}
		})
	}
	t.Run("outside the API", func(t *testing.T) {
		r := h.do(http.MethodGet, "/v1/info", "", nil)
		if r.status != 200 || !json.Valid(r.body) {
			t.Fatalf("native API: %v", r)
		}
	})
	if _, err := h.store.Record(context.Background(), h.uid(), c.id); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("a refused check-in wrote a record: %v", err)
	}
}

// TestInstallFlow walks mender-client's sequence: the deployment, the
// download, each status, success.
func TestInstallFlow(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	nd := c.offered()
	for _, st := range []struct {
		status string
		want   rollout.State
	}{
		{"downloading", rollout.StateDownloading},
		{"pause_before_installing", rollout.StateDownloading},
		{"installing", rollout.StateInstalling},
		{"rebooting", rollout.StateInstalled},
		{"rebooting", rollout.StateInstalled}, // a retried report
	} {
		if r := c.status(nd.ID, st.status); r.status != http.StatusNoContent {
			t.Fatalf("%s: %v", st.status, r)
		}
		if rec := h.record(c.id); rec.State != st.want {
			t.Fatalf("after %s: %s, want %s", st.status, rec.State, st.want)
		}
	}
	if r := c.status(nd.ID, "success"); r.status != http.StatusNoContent {
		t.Fatalf("success: %v", r)
	}
	if rec := h.record(c.id); rec.State != rollout.StateSucceeded {
		t.Fatalf("after success: %+v", rec)
	}
	if d := h.device(c.id); d.Version != "2.0.0" {
		t.Fatalf("running %q after success", d.Version)
	}
	counts, err := h.store.Counts(context.Background(), h.uid(), h.clock.Now().Add(-time.Hour))
	if err != nil || counts.Waves[0] == nil || counts.Waves[0].States[rollout.StateSucceeded] != 1 {
		t.Fatalf("counts %+v %v", counts, err)
	}
	if r := c.status(nd.ID, "success"); r.status != http.StatusNoContent || h.record(c.id).State != rollout.StateSucceeded {
		t.Fatalf("success again: %v", r)
	}
	if r := c.status(nd.ID, "failure"); r.status != http.StatusNoContent || h.record(c.id).State != rollout.StateSucceeded {
		t.Fatalf("failure after success: %v %s", r, h.record(c.id).State)
	}
	if r := c.next(artifactNew, deviceType); r.status != http.StatusNoContent {
		t.Fatalf("next after success: %v", r)
	}
	if r := h.do(http.MethodGet, nd.Artifact.Source.URI, "", nil); r.status != http.StatusForbidden {
		t.Fatalf("download after success: %v", r)
	}
}

// TestAlreadyInstalled: the client found the artifact installed.
func TestAlreadyInstalled(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	nd := c.offered()
	if r := c.status(nd.ID, "already-installed"); r.status != http.StatusNoContent {
		t.Fatalf("%v", r)
	}
	if rec := h.record(c.id); rec.State != rollout.StateSucceeded {
		t.Fatalf("record %+v", rec)
	}
	if d := h.device(c.id); d.Version != "2.0.0" {
		t.Fatalf("version %q", d.Version)
	}
}

// TestFailureLog: a failure waits for its deployment log, whose last
// errors become the reason logged in the rollout's failure log, once.
func TestFailureLog(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	nd := c.offered()
	c.status(nd.ID, "downloading")
	if r := c.status(nd.ID, "failure"); r.status != http.StatusNoContent {
		t.Fatalf("failure: %v", r)
	}
	rec := h.record(c.id)
	if rec.State != rollout.StateFailed || !strings.Contains(rec.Reason, "deployment log has not arrived") {
		t.Fatalf("record %+v", rec)
	}
	if f := h.failures(); len(f) != 0 {
		t.Fatalf("failure logged before its log: %+v", f)
	}
	msgs := []mender.LogMessage{
		{Timestamp: "2026-01-02T03:04:05Z", Level: "info", Message: "Running Mender client"},
		{Timestamp: "2026-01-02T03:04:06Z", Level: "error", Message: "Artifact install failed"},
		{Timestamp: "2026-01-02T03:04:07Z", Level: "error", Message: "ArtifactInstall: write: no space left on device"},
		{Timestamp: "2026-01-02T03:04:08Z", Level: "info", Message: "Rolling back"},
	}
	if r := c.putLog(nd.ID, msgs...); r.status != http.StatusNoContent {
		t.Fatalf("log: %v", r)
	}
	const want = "mender: Artifact install failed; ArtifactInstall: write: no space left on device"
	if rec := h.record(c.id); rec.State != rollout.StateFailed || rec.Reason != want {
		t.Fatalf("after the log: %+v", rec)
	}
	f := h.failures()
	if len(f) != 1 || f[0].DeviceID != c.id || f[0].Reason != want {
		t.Fatalf("failure log %+v", f)
	}
	if r := c.putLog(nd.ID, mender.LogMessage{Level: "error", Message: "again"}); r.status != http.StatusNoContent {
		t.Fatalf("second log: %v", r)
	}
	if f := h.failures(); len(f) != 1 || h.record(c.id).Reason != want {
		t.Fatalf("after a second log: %+v, reason %q", f, h.record(c.id).Reason)
	}
	if r := c.putLog(nd.ID); r.status != http.StatusBadRequest {
		t.Fatalf("empty log: %v", r)
	}
}

// TestStatusRefusals: malformed, unknown and foreign status reports.
func TestStatusRefusals(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	nd := c.offered()
	other := h.newClient().login()
	if r := c.status(nd.ID, "exploded"); r.status != http.StatusBadRequest {
		t.Fatalf("unknown status: %v", r)
	}
	if r := h.do(http.MethodPut, deploymentPath(nd.ID, "status"), c.token, []byte(`status`)); r.status != http.StatusBadRequest {
		t.Fatalf("not JSON: %v", r)
	}
	if r := other.status(nd.ID, "downloading"); r.status != http.StatusNotFound {
		t.Fatalf("another device's deployment: %v", r)
	}
	if r := other.putLog(nd.ID, mender.LogMessage{Level: "error", Message: "x"}); r.status != http.StatusNotFound {
		t.Fatalf("another device's log: %v", r)
	}
	if r := c.status(mender.DeploymentID(h.uid(), mender.KindRollback), "downloading"); r.status != http.StatusNotFound {
		t.Fatalf("a rollback never offered: %v", r)
	}
	big := []byte(`{"messages":[{"level":"error","message":"` + strings.Repeat("x", mender.MaxBodyBytes) + `"}]}`)
	if r := h.do(http.MethodPut, deploymentPath(nd.ID, "log"), c.token, big); r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("log over the body limit: %v", r)
	}
	if rec := h.record(c.id); rec.State != rollout.StateOffered {
		t.Fatalf("record after refusals %+v", rec)
	}
}

// abort aborts the harness rollout.
func (h *harness) abort(rollback bool) {
	h.rollout.Spec.Abort = true
	if rollback {
		yes := true
		h.rollout.Spec.RollbackOnAbort = &yes
		h.rollout.Status.Phase, h.rollout.Status.RollbackRequested = "Aborted", true
	}
	h.rebuild()
}

// TestAbort: mender-client asks for no deployment while it runs one; it
// learns of an abort from the 409 to its next status report, and the
// cancel counts as acknowledged.
func TestAbort(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	nd := c.offered()
	if r := c.status(nd.ID, "downloading"); r.status != http.StatusNoContent {
		t.Fatalf("%v", r)
	}
	h.abort(false)
	if r := c.status(nd.ID, "installing"); r.status != http.StatusConflict {
		t.Fatalf("status after the abort: %v", r)
	}
	if rec := h.record(c.id); rec.State != rollout.StateCanceled || rec.Reason != rollout.ReasonCancelAcknowledged {
		t.Fatalf("record %+v", rec)
	}
	if r := c.status(nd.ID, "failure"); r.status != http.StatusConflict {
		t.Fatalf("status after the cancel: %v", r)
	}
	if r := h.do(http.MethodGet, nd.Artifact.Source.URI, "", nil); r.status != http.StatusForbidden {
		t.Fatalf("download after the abort: %v", r)
	}
	if r := c.next(artifactOld, deviceType); r.status != http.StatusNoContent {
		t.Fatalf("next after the abort: %v", r)
	}
	if f := h.failures(); len(f) != 0 {
		t.Fatalf("failure log %+v", f)
	}
}

// TestAbortPastCancel: the status reports of a client past the point of
// cancel (installing) go on after an abort, as the rules wait for its
// outcome; and the check-in a status report makes after an abort touches
// no other rollout.
func TestAbortPastCancel(t *testing.T) {
	h := newHarness(t)
	late, early := h.newClient().login(), h.newClient().login()
	nd := late.offered()
	late.status(nd.ID, "installing")
	early.offered()
	// Another rollout both devices are in the fleet of, of an older
	// release: a check-in records them skipped in it.
	h.moreReleases = []otav1.FirmwareRelease{h.makeRelease("fw-0", "0.5.0", otav1.FormatMender, []byte("v0"), "release-0", deviceType)}
	ro3 := *h.rollout.DeepCopy()
	ro3.Name, ro3.UID, ro3.Spec.ReleaseRef.Name = "ro3", "rollout-uid-3", "fw-0"
	ro3.CreationTimestamp = metav1.NewTime(ro3.CreationTimestamp.Add(time.Second))
	h.moreRollouts = []otav1.Rollout{ro3}
	h.abort(false)
	for _, st := range []string{"rebooting", "success"} {
		if r := late.status(nd.ID, st); r.status != http.StatusNoContent {
			t.Fatalf("%s after the abort: %v", st, r)
		}
	}
	if rec := h.record(late.id); rec.State != rollout.StateSucceeded {
		t.Fatalf("record %+v", rec)
	}
	if r := early.status(nd.ID, "downloading"); r.status != http.StatusConflict {
		t.Fatalf("a cancelable deployment after the abort: %v", r)
	}
	if _, err := h.store.Record(context.Background(), "rollout-uid-3", early.id); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("the status report wrote a record in another rollout: %v", err)
	}
	if r := early.next(artifactOld, deviceType); r.status != http.StatusNoContent {
		t.Fatalf("next after the abort: %v", r)
	}
	if rec, err := h.store.Record(context.Background(), "rollout-uid-3", early.id); err != nil || rec.State != rollout.StateSkipped {
		t.Fatalf("the other rollout after a check-in: %+v %v", rec, err)
	}
}

// TestAbortSeenByCheckIn: a client that asks next after the abort is told
// nothing; its status report then gets the 409.
func TestAbortSeenByCheckIn(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	nd := c.offered()
	h.abort(false)
	if r := c.next(artifactOld, deviceType); r.status != http.StatusNoContent {
		t.Fatalf("next after the abort: %v", r)
	}
	if rec := h.record(c.id); rec.State != rollout.StateCanceled || rec.Reason != rollout.ReasonAborted {
		t.Fatalf("record %+v", rec)
	}
	if r := c.status(nd.ID, "downloading"); r.status != http.StatusConflict {
		t.Fatalf("%v", r)
	}
	if rec := h.record(c.id); rec.Reason != rollout.ReasonCancelAcknowledged {
		t.Fatalf("record %+v", rec)
	}
}

// TestSuccessAfterAbort: a client that installed the release anyway runs
// it; the rules count that as success.
func TestSuccessAfterAbort(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	nd := c.offered()
	c.status(nd.ID, "downloading")
	h.abort(false)
	if r := c.status(nd.ID, "success"); r.status != http.StatusConflict {
		t.Fatalf("%v", r)
	}
	if d := h.device(c.id); d.Version != "2.0.0" {
		t.Fatalf("version %q", d.Version)
	}
	if rec := h.record(c.id); rec.State != rollout.StateSucceeded {
		t.Fatalf("record %+v", rec)
	}
}

// TestRollback: after an abort with rollback, a device that took the
// release is offered the previous one as another deployment.
func TestRollback(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	nd := c.offered()
	c.status(nd.ID, "installing")
	c.status(nd.ID, "success")
	if rec := h.record(c.id); rec.State != rollout.StateSucceeded {
		t.Fatalf("%+v", rec)
	}
	h.abort(true)
	r := c.next(artifactNew, deviceType)
	var rb mender.NextDeployment
	if r.status != 200 || json.Unmarshal(r.body, &rb) != nil {
		t.Fatalf("next after the abort: %v", r)
	}
	if rb.ID != mender.DeploymentID(h.uid(), mender.KindRollback) || rb.ID == nd.ID || rb.Artifact.Name != artifactOld {
		t.Fatalf("rollback %+v", rb)
	}
	if r := h.do(http.MethodGet, rb.Artifact.Source.URI, "", nil); r.status != 200 || string(r.body) != "old firmware image" {
		t.Fatalf("rollback download: %v", r)
	}
	if r := c.status(nd.ID, "downloading"); r.status != http.StatusNotFound {
		t.Fatalf("the install's id after the rollback was offered: %v", r)
	}
	for _, st := range []string{"downloading", "installing", "rebooting"} {
		if r := c.status(rb.ID, st); r.status != http.StatusNoContent {
			t.Fatalf("%s: %v", st, r)
		}
	}
	if rec := h.record(c.id); rec.State != rollout.StateSucceeded || rec.RollbackRelease == "" {
		t.Fatalf("during the rollback %+v", rec)
	}
	if r := c.status(rb.ID, "success"); r.status != http.StatusNoContent {
		t.Fatalf("success: %v", r)
	}
	if rec := h.record(c.id); rec.State != rollout.StateRolledBack {
		t.Fatalf("after the rollback %+v", rec)
	}
	if d := h.device(c.id); d.Version != "1.0.0" {
		t.Fatalf("version %q", d.Version)
	}
	if r := h.do(http.MethodGet, rb.Artifact.Source.URI, "", nil); r.status != http.StatusForbidden {
		t.Fatalf("rollback download after it ended: %v", r)
	}
	if r := c.next(artifactOld, deviceType); r.status != http.StatusNoContent {
		t.Fatalf("next after the rollback: %v", r)
	}
}

// TestRollbackUndeliverable: a rollback to a release mender-client
// cannot install is no deployment (and no crash).
func TestRollbackUndeliverable(t *testing.T) {
	h := newHarness(t)
	h.previous = h.makeRelease("fw-1", "1.0.0", otav1.FormatRaw, []byte("raw image"), "")
	h.rebuild()
	c := h.newClient().login()
	r := c.next("1.0.0", deviceType)
	var nd mender.NextDeployment
	if r.status != 200 || json.Unmarshal(r.body, &nd) != nil {
		t.Fatalf("next: %v", r)
	}
	c.status(nd.ID, "success")
	h.abort(true)
	if r := c.next(artifactNew, deviceType); r.status != http.StatusNoContent {
		t.Fatalf("next after the abort: %v", r)
	}
	if rec := h.record(c.id); rec.State != rollout.StateSucceeded || rec.RollbackRelease == "" {
		t.Fatalf("record %+v", rec)
	}
	if r := c.next(artifactNew, deviceType); r.status != http.StatusNoContent {
		t.Fatalf("next again: %v", r)
	}
}

// TestDownload: the link streams the plaintext image, whole, resumed and
// HEAD, with no other credential; it is refused once expired, tampered
// with, or its deployment closed, and for another device.
func TestDownload(t *testing.T) {
	h := newHarness(t)
	c := h.newClient().login()
	nd := c.offered()
	uri := nd.Artifact.Source.URI
	size := strconv.Itoa(len(h.image))
	r := h.do(http.MethodGet, uri, "", nil)
	if r.status != 200 || !bytes.Equal(r.body, h.image) || r.header.Get("Content-Length") != size {
		t.Fatalf("GET: %d, %d bytes, %v", r.status, len(r.body), r.header)
	}
	r = h.do(http.MethodHead, uri, "", nil)
	if r.status != 200 || r.header.Get("Content-Length") != size || len(r.body) != 0 {
		t.Fatalf("HEAD: %d %v", r.status, r.header)
	}
	for _, off := range []int{1000, 65536, len(h.image) - 1} {
		r = h.do(http.MethodGet, uri, "", nil, "Range", "bytes="+strconv.Itoa(off)+"-")
		if r.status != http.StatusPartialContent || !bytes.Equal(r.body, h.image[off:]) ||
			r.header.Get("Content-Range") != "bytes "+strconv.Itoa(off)+"-"+strconv.Itoa(len(h.image)-1)+"/"+size {
			t.Fatalf("Range from %d: %d %v, %d bytes", off, r.status, r.header, len(r.body))
		}
	}
	// The device token is no credential here, and no harm either.
	if r := h.do(http.MethodGet, uri, c.token, nil, "Range", "bytes=0-3"); r.status != 206 || !bytes.Equal(r.body, h.image[:4]) {
		t.Fatalf("with a token: %d", r.status)
	}

	base, tok := uri[:strings.LastIndex(uri, "/")+1], uri[strings.LastIndex(uri, "/")+1:]
	i := strings.LastIndex(tok, ".") + 5
	flip := map[byte]byte{'A': 'B'}[tok[i]]
	if flip == 0 {
		flip = 'A'
	}
	tampered := tok[:i] + string(flip) + tok[i+1:]
	other := h.newClient().login()
	foreign, err := h.tokens.IssueLink(mender.Link{DeviceID: other.id, Deployment: nd.ID, Blob: h.release.Status.Artifact.EncryptedSHA256, Expires: h.clock.Now().Add(time.Hour)}, h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherBlob, _ := h.tokens.IssueLink(mender.Link{DeviceID: c.id, Deployment: nd.ID, Blob: h.previous.Status.Artifact.EncryptedSHA256, Expires: h.clock.Now().Add(time.Hour)}, h.clock.Now())
	for name, u := range map[string]string{
		"tampered":                        base + tampered,
		"another device's deployment":     base + foreign,
		"another blob for the deployment": base + otherBlob,
		"garbage":                         base + "x",
	} {
		if r := h.do(http.MethodGet, u, "", nil); r.status != http.StatusForbidden {
			t.Fatalf("%s: %v", name, r)
		}
	}
	h.clock.advance(linkTTL + time.Minute)
	if r := h.do(http.MethodGet, uri, "", nil); r.status != http.StatusForbidden {
		t.Fatalf("expired link: %v", r)
	}
	// A fresh link of the same deployment works until the deployment ends.
	c.login()
	fresh := c.offered()
	if r := h.do(http.MethodHead, fresh.Artifact.Source.URI, "", nil); r.status != 200 {
		t.Fatalf("fresh link: %v", r)
	}
	c.status(fresh.ID, "failure")
	if r := h.do(http.MethodHead, fresh.Artifact.Source.URI, "", nil); r.status != http.StatusForbidden {
		t.Fatalf("link after the failure: %v", r)
	}
}

// TestInventory: attributes that can be labels become mender.io/ labels;
// PUT replaces them, PATCH merges; the enrollment's labels win; a change
// re-enrolls the device so its fleets are matched again.
func TestInventory(t *testing.T) {
	h := newHarness(t)
	h.auth.set(func(f *fakeAuth) { f.labels = map[string]string{"region": "eu", "mender.io/hostname": "fixed"} })
	c := h.newClient().login()
	seq := h.device(c.id).Seq
	r := c.inventory(http.MethodPut,
		"device_type", "sensor-v1", "artifact_name", "release-1", "mender_client_version", "3.4.0",
		"hostname", "dev-1", "kernel", "Linux version 5.10", "mac_eth0", "02:00:00:00:00:01", "cpu", "imx8")
	if r.status != http.StatusOK {
		t.Fatalf("PUT: %v", r)
	}
	d := h.device(c.id)
	want := map[string]string{"region": "eu", "mender.io/hostname": "fixed", "mender.io/device_type": "sensor-v1", "mender.io/cpu": "imx8"}
	if !maps.Equal(d.Labels, want) {
		t.Fatalf("labels %v, want %v", d.Labels, want)
	}
	if d.Seq <= seq {
		t.Fatalf("seq %d → %d: not re-enrolled", seq, d.Seq)
	}
	seq = d.Seq
	if r := c.inventory(http.MethodPut, "device_type", "sensor-v1", "hostname", "dev-1", "cpu", "imx8"); r.status != 200 {
		t.Fatalf("%v", r)
	}
	if d := h.device(c.id); d.Seq != seq {
		t.Fatalf("the same labels re-enrolled the device (seq %d → %d)", seq, d.Seq)
	}
	if r := c.inventory(http.MethodPatch, "board", "rev-b"); r.status != 200 {
		t.Fatalf("PATCH: %v", r)
	}
	want["mender.io/board"] = "rev-b"
	if d := h.device(c.id); !maps.Equal(d.Labels, want) || d.Seq <= seq {
		t.Fatalf("after PATCH: labels %v seq %d", d.Labels, d.Seq)
	}
	if r := c.inventory(http.MethodPut, "board", "rev-c"); r.status != 200 {
		t.Fatalf("PUT: %v", r)
	}
	want = map[string]string{"region": "eu", "mender.io/hostname": "fixed", "mender.io/board": "rev-c"}
	if d := h.device(c.id); !maps.Equal(d.Labels, want) {
		t.Fatalf("after PUT: labels %v, want %v", d.Labels, want)
	}
	if r := h.do(http.MethodPut, pathInventory, c.token, []byte(`{"name":"x"}`)); r.status != http.StatusBadRequest {
		t.Fatalf("not a list: %v", r)
	}
	if r := h.do(http.MethodPut, pathInventory, "", []byte(`[]`)); r.status != http.StatusUnauthorized {
		t.Fatalf("no token: %v", r)
	}
	// A list value is no label, and no error.
	if r := h.do(http.MethodPatch, pathInventory, c.token, []byte(`[{"name":"ipv4","value":["10.0.0.2/24","10.0.0.3/24"]}]`)); r.status != 200 {
		t.Fatalf("list value: %v", r)
	}
	if d := h.device(c.id); !maps.Equal(d.Labels, want) {
		t.Fatalf("after a list value: %v", d.Labels)
	}
	// The new labels select the device out of the rollout's fleet.
	if r := c.inventory(http.MethodPut); r.status != 200 {
		t.Fatalf("%v", r)
	}
	h.auth.set(func(f *fakeAuth) { f.labels = map[string]string{"region": "us"} })
	if r := c.inventory(http.MethodPut); r.status != 200 {
		t.Fatalf("%v", r)
	}
	if d := h.device(c.id); d.Labels["region"] != "us" {
		t.Fatalf("enrollment labels not applied: %v", d.Labels)
	}
	if r := c.next(artifactOld, deviceType); r.status != http.StatusNoContent {
		t.Fatalf("next out of the fleet: %v", r)
	}
}

// TestCommitRaisesFloor: mender-client keeps no security floor, so when
// the rollout that installed a release commits, the server raises the
// floor it keeps for the device, and no release below it is offered.
func TestCommitRaisesFloor(t *testing.T) {
	h := newHarness(t)
	h.release.Spec.SecurityVersion, h.release.Status.Artifact.SecurityVersion = 3, 3
	h.rebuild()
	c := h.newClient().login()
	nd := c.offered()
	c.status(nd.ID, "success")
	if d := h.device(c.id); d.SecurityFloor != 0 {
		t.Fatalf("floor %d before the commit", d.SecurityFloor)
	}
	h.rollout.Spec.Commit = true
	h.rebuild()
	if r := c.next(artifactNew, deviceType); r.status != http.StatusNoContent {
		t.Fatalf("next on the committed release: %v", r)
	}
	if d := h.device(c.id); d.SecurityFloor != 3 || d.Version != "2.0.0" {
		t.Fatalf("after the commit: floor %d, version %q; want 3, 2.0.0", d.SecurityFloor, d.Version)
	}
	// A rollback to 1.0.0 (securityVersion 1) is below the floor now.
	h.abort(true)
	if r := c.next(artifactNew, deviceType); r.status != http.StatusNoContent {
		t.Fatalf("next after an abort with rollback, floor 3: %v (a rollback below the floor)", r)
	}
}
