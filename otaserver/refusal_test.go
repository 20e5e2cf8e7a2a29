package otaserver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/agent"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

type nopInstaller struct{ installs int }

func (n *nopInstaller) Running(context.Context) (string, error)    { return "", nil }
func (n *nopInstaller) Install(context.Context, agent.Image) error { n.installs++; return nil }
func (n *nopInstaller) Confirm(context.Context, string) error      { return nil }

type flipBlob struct{ next http.RoundTripper }

func (f flipBlob) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := f.next.RoundTrip(r)
	if err != nil || !strings.HasPrefix(r.URL.Path, "/v1/blobs/") {
		return resp, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) > 5000 {
		b[5000] ^= 1
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// TestRefusalStoredAsFailure: a sample of the tamper matrix against the
// real server: the real agent refuses, reports, and the server keeps each
// refusal as a failure with the agent's reason (what the reporter writes
// into Rollout.status.recentFailures).
func TestRefusalStoredAsFailure(t *testing.T) {
	h := newHarness(t, 1000)
	vendor, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sum := sha256.Sum256(h.image)
	sig, _ := ecdsa.SignASN1(rand.Reader, vendor, sum[:])
	h.release.Spec.Signature.Value = base64.StdEncoding.EncodeToString(sig)
	h.rebuild()
	der, _ := x509.MarshalPKIXPublicKey(&vendor.PublicKey)
	vendorPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ = x509.MarshalPKIXPublicKey(&other.PublicKey)
	otherPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	assignPEM, _ := assignment.MarshalPublicKeyPEM(h.verifierKey())

	cases := []struct {
		id, code, reason string
		cfg              func(*agent.Config)
	}{
		{"ref-chunk", agent.RefuseChunkAuth, "failed authentication", func(c *agent.Config) {
			c.HTTPClient = &http.Client{Transport: flipBlob{http.DefaultTransport}}
		}},
		{"ref-vendor", agent.RefuseVendorSignature, "vendor signature not verified", func(c *agent.Config) {
			c.VendorKeysPEM = [][]byte{otherPEM}
		}},
		// A device that trusts none of the server's keys (it missed a
		// whole key rotation) fetches the key set, cannot verify it, and
		// reports the key it does not trust.
		{"ref-key", agent.RefuseUntrustedKey, "untrusted-signing-key: assignment signed by key " + h.signer.KeyID(), func(c *agent.Config) {
			c.AssignmentKeyPEM = otherPEM
		}},
	}
	var ids []string
	for _, tc := range cases {
		id := h.idIn(tc.id, true) // a device ID inside the open wave
		ids = append(ids, id)
		inst := &nopInstaller{}
		cfg := agent.Config{
			ServerURL: h.srv.URL, DeviceID: id, DeviceType: "sensor-v1", Labels: map[string]string{"region": "eu"},
			BootstrapToken: bootstrap, AssignmentKeyPEM: assignPEM, VendorKeysPEM: [][]byte{vendorPEM},
			Store: agent.NewMemStore(), Installer: inst, Version: "1.0.0", SecurityFloor: 2,
		}
		tc.cfg(&cfg)
		a, err := agent.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Step(ctx)
		r, ok := agent.AsRefusal(err)
		if !ok || r.Code != tc.code || inst.installs != 0 {
			t.Fatalf("%s: %v, installs %d", tc.id, err, inst.installs)
		}
		rec, _ := h.store.Record(ctx, string(h.rollout.UID), id)
		if rec.State != "failed" || !strings.Contains(rec.Reason, tc.reason) {
			t.Fatalf("%s: record %s %q", tc.id, rec.State, rec.Reason)
		}
	}
	failures, _ := h.store.RecentFailures(ctx, string(h.rollout.UID), 10)
	if len(failures) != len(cases) {
		t.Fatalf("failures %+v", failures)
	}
	for i, tc := range cases {
		found := false
		for _, f := range failures {
			found = found || (f.DeviceID == ids[i] && strings.Contains(f.Reason, tc.reason))
		}
		if !found {
			t.Fatalf("no failure for %s with %q in %+v", ids[i], tc.reason, failures)
		}
	}
}
