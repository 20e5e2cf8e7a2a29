package mendertest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	authPath      = "/api/devices/v1/authentication/auth_requests"
	nextV2Path    = "/api/devices/v2/deployments/device/deployments/next"
	nextV1Path    = "/api/devices/v1/deployments/device/deployments/next"
	inventoryPath = "/api/devices/v1/inventory/device/attributes"
	// waitTimeout bounds each wait for the client, which polls every
	// second; generous, as a loaded machine slows it a lot.
	waitTimeout = 60 * time.Second
)

func TestFindBinariesFailsWithoutDirectory(t *testing.T) {
	t.Setenv(DirEnv, "")
	if _, err := findBinaries(); err == nil || !strings.Contains(err.Error(), "make mender") {
		t.Errorf("unset %s: err = %v, want one naming `make mender`", DirEnv, err)
	}
	t.Setenv(DirEnv, t.TempDir())
	if _, err := findBinaries(); err == nil || !strings.Contains(err.Error(), "make mender") {
		t.Errorf("empty %s: err = %v, want one naming `make mender`", DirEnv, err)
	}
	t.Setenv(DirEnv, "bin/mender")
	if _, err := findBinaries(); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative %s: err = %v, want one asking for an absolute path", DirEnv, err)
	}
}

func TestCheckSandboxDir(t *testing.T) {
	t.Parallel()
	for dir, ok := range map[string]bool{
		"/tmp/mendertest1":      true,
		"/tmp/a,b":              false,
		"/tmp/a:b":              false,
		"relative":              false,
		"/etc/x":                false,
		"/var/lib":              false,
		"/usr/share/mendertest": false,
		"/usr/sharex":           true,
	} {
		if err := checkSandboxDir(dir); (err == nil) != ok {
			t.Errorf("checkSandboxDir(%q) = %v, want ok=%v", dir, err, ok)
		}
	}
}

// artifactReport is what `mender-artifact read` says about an artifact.
type artifactReport struct {
	name, devices, signature string
	types                    []string
}

func parseArtifactReport(t *testing.T, out string) artifactReport {
	t.Helper()
	field := func(re string) string {
		m := regexp.MustCompile(`(?m)^\s*` + re + `:[ \t]*(.*)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %q in mender-artifact read output:\n%s", re, out)
		}
		return strings.TrimSpace(m[1])
	}
	var types []string
	for _, m := range regexp.MustCompile(`(?m)^\s*Type:\s*(\S+)\s*$`).FindAllStringSubmatch(out, -1) {
		types = append(types, m[1])
	}
	return artifactReport{
		name:      field("Name"),
		devices:   field("Compatible devices"),
		signature: field("Signature"),
		types:     types,
	}
}

func TestWriteArtifactReadBack(t *testing.T) {
	t.Parallel()
	a := WriteArtifact(t, ArtifactOptions{Name: "release-2.1.0", DeviceTypes: []string{"sensor-v1", "sensor-v2"}})
	if len(a.Bytes) <= MinArtifactSize || len(a.Payload) == 0 || a.PayloadName != "payload.bin" {
		t.Fatalf("artifact %s: %d bytes, payload %q of %d bytes", a.Path, len(a.Bytes), a.PayloadName, len(a.Payload))
	}
	out := ReadArtifact(t, a.Path, nil)
	got := parseArtifactReport(t, out)
	want := artifactReport{name: "release-2.1.0", devices: "'[sensor-v1 sensor-v2]'", signature: "no signature", types: []string{ModuleType}}
	if got.name != want.name || got.devices != want.devices || got.signature != want.signature || !slices.Equal(got.types, want.types) {
		t.Errorf("mender-artifact read = %+v, want %+v; output:\n%s", got, want, out)
	}
	if !strings.Contains(out, "name:     payload.bin") || !strings.Contains(out, fmt.Sprintf("size:     %d", len(a.Payload))) {
		t.Errorf("the report does not list payload.bin of %d bytes:\n%s", len(a.Payload), out)
	}

	failing := WriteArtifact(t, ArtifactOptions{Name: "broken", DeviceTypes: []string{"d"}, Type: FailingModuleType, Payload: []byte("x")})
	if got := parseArtifactReport(t, ReadArtifact(t, failing.Path, nil)); !slices.Equal(got.types, []string{FailingModuleType}) {
		t.Errorf("payload types = %q, want [%s]", got.types, FailingModuleType)
	}
}

func TestWriteSignedArtifact(t *testing.T) {
	t.Parallel()
	other := GenerateKey(t, KeyECDSA)
	for _, typ := range []KeyType{KeyRSA, KeyECDSA} {
		t.Run(string(typ), func(t *testing.T) {
			t.Parallel()
			key := GenerateKey(t, typ)
			a := WriteArtifact(t, ArtifactOptions{Name: "signed", DeviceTypes: []string{"d"}, SigningKey: key})
			if got := parseArtifactReport(t, ReadArtifact(t, a.Path, key.PublicPEM)); got.signature != "signed and verified correctly" {
				t.Errorf("signature = %q, want verified", got.signature)
			}
			// A wrong key does not fail the read, the report says so.
			if got := parseArtifactReport(t, ReadArtifact(t, a.Path, other.PublicPEM)); got.signature != "signed; verification using provided key failed" {
				t.Errorf("signature checked with another key = %q, want a failed verification", got.signature)
			}
		})
	}
	if _, err := GenerateKey(t, KeyEd25519).TraditionalPEM(); err == nil {
		t.Error("TraditionalPEM of an Ed25519 key: no error, but mender-artifact 3.9 cannot sign with one")
	}
}

// request is one request the fake server received.
type request struct {
	Method, Path, Query string
	Header              http.Header
	Body                []byte
}

func (r request) String() string {
	s := r.Method + " " + r.Path
	if r.Query != "" {
		s += "?" + r.Query
	}
	return s
}

// fakeServer records every request and answers with respond.
type fakeServer struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []request
	respond func(w http.ResponseWriter, r *http.Request, req request, earlier []request)
}

func newFakeServer(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, req request, earlier []request)) *fakeServer {
	f := &fakeServer{respond: respond}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read %s %s: %v", r.Method, r.URL, err)
		}
		req := request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}
		f.mu.Lock()
		earlier := slices.Clone(f.reqs)
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		f.respond(w, r, req, earlier)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// waitFor waits until done holds for the requests so far.
func (f *fakeServer) waitFor(t *testing.T, d *Device, what string, done func([]request) bool) []request {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		reqs := f.requests()
		if done(reqs) {
			return reqs
		}
		select {
		case <-d.Exited():
			t.Fatalf("mender exited before %s; requests %v; log:\n%s", what, reqs, d.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; requests %v; log:\n%s", what, waitTimeout, reqs, d.Log())
		}
	}
}

func count(reqs []request, method, path string) int {
	n := 0
	for _, r := range reqs {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

// hostPaths are what the client would create without the sandbox.
var hostPaths = []string{"/etc/mender", "/usr/share/mender", "/var/lib/mender"}

// checkHostUntouched fails t if a host path that did not exist when t
// began exists now. Call it after the device stopped.
func checkHostUntouched(t *testing.T) {
	t.Helper()
	var before []string
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			t.Logf("%s exists on this host: its creation cannot be checked", p)
			before = append(before, p)
		}
	}
	t.Cleanup(func() {
		for _, p := range hostPaths {
			if _, err := os.Lstat(p); err == nil && !slices.Contains(before, p) {
				t.Errorf("the sandboxed client created %s on the host", p)
			}
		}
	})
}

// authBody is the JSON the client POSTs to auth_requests.
type authBody struct {
	IDData      string `json:"id_data"`
	TenantToken string `json:"tenant_token"`
	Pubkey      string `json:"pubkey"`
}

// verifyAuthSignature checks X-MEN-Signature against the exact body and
// names the encoding that matched.
func verifyAuthSignature(pub crypto.PublicKey, body, sig []byte) (string, error) {
	digest := sha256.Sum256(body)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig); err != nil {
			return "", fmt.Errorf("RSA PKCS#1 v1.5 SHA-256: %w", err)
		}
		return "RSA PKCS#1 v1.5 over SHA-256", nil
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest[:], sig) {
			return "", errors.New("not an ASN.1 DER ECDSA signature over SHA-256 of the body")
		}
		return "ECDSA over SHA-256, ASN.1 DER", nil
	case ed25519.PublicKey:
		if !ed25519.Verify(k, body, sig) {
			return "", errors.New("not a pure Ed25519 signature of the body")
		}
		return "Ed25519 over the body", nil
	default:
		return "", fmt.Errorf("unexpected public key type %T", pub)
	}
}

// TestAuthRequest starts the client against a server that refuses it and
// checks its auth request, for the key the client generates and for
// given keys of every type.
func TestAuthRequest(t *testing.T) {
	t.Parallel()
	for _, typ := range []KeyType{"", KeyRSA, KeyECDSA, KeyEd25519} {
		name := string(typ)
		if typ == "" {
			name = "generated"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkHostUntouched(t)
			srv := newFakeServer(t, func(w http.ResponseWriter, _ *http.Request, _ request, _ []request) {
				w.WriteHeader(http.StatusUnauthorized)
			})
			opts := Options{
				ServerURL:   srv.URL,
				TenantToken: "tenant-token-1",
				Identity:    map[string]string{"mac": "02:00:00:00:00:01", "serial": "SN-" + name},
			}
			var key *Key
			if typ != "" {
				key = GenerateKey(t, typ)
				opts.KeyPEM = key.PEM
			}
			d := Start(t, opts)
			reqs := srv.waitFor(t, d, "auth request", func(reqs []request) bool { return len(reqs) > 0 })
			if err := d.Stop(); err != nil {
				t.Fatal(err)
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != authPath {
				t.Fatalf("first request %v, want POST %s", r, authPath)
			}
			if got := r.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := r.Header.Get("Authorization"); got != "Bearer tenant-token-1" {
				t.Errorf("Authorization = %q, want the tenant token as bearer token", got)
			}
			var body authBody
			dec := json.NewDecoder(bytes.NewReader(r.Body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				t.Fatalf("auth request body %q: %v", r.Body, err)
			}
			if body.TenantToken != "tenant-token-1" {
				t.Errorf("tenant_token = %q", body.TenantToken)
			}
			var id map[string]string
			if err := json.Unmarshal([]byte(body.IDData), &id); err != nil {
				t.Errorf("id_data %q is not a JSON object of strings: %v", body.IDData, err)
			} else if fmt.Sprint(id) != fmt.Sprint(opts.Identity) {
				t.Errorf("id_data = %v, want %v", id, opts.Identity)
			}
			block, rest := pem.Decode([]byte(body.Pubkey))
			if block == nil || block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) > 0 {
				t.Fatalf("pubkey is not one PEM PUBLIC KEY block:\n%s", body.Pubkey)
			}
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				t.Fatalf("pubkey: %v", err)
			}
			if key != nil {
				if !key.Signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
					t.Errorf("pubkey is not the public half of the given key")
				}
			} else if rk, ok := pub.(*rsa.PublicKey); !ok || rk.N.BitLen() != 3072 {
				t.Errorf("generated key %T, want RSA 3072", pub)
			}
			sig, err := base64.StdEncoding.DecodeString(r.Header.Get("X-MEN-Signature"))
			if err != nil || len(sig) == 0 {
				t.Fatalf("X-MEN-Signature %q: not standard base64 (%v)", r.Header.Get("X-MEN-Signature"), err)
			}
			encoding, err := verifyAuthSignature(pub, r.Body, sig)
			if err != nil {
				t.Fatalf("X-MEN-Signature (%d bytes) does not verify: %v", len(sig), err)
			}
			t.Logf("%s key: signature %s, %d bytes", name, encoding, len(sig))
			if stored, err := os.ReadFile(filepath.Join(d.DataDir, "mender-agent.pem")); err != nil {
				t.Errorf("device key: %v", err)
			} else if key != nil && !bytes.Equal(stored, key.PEM) {
				t.Errorf("the client replaced the given key with\n%s", stored)
			}
		})
	}
}

// TestRequestSequence accepts the client and records what it asks for
// while there is no deployment; the first v2 next request gets 404, so
// the client falls back to v1.
func TestRequestSequence(t *testing.T) {
	t.Parallel()
	checkHostUntouched(t)
	srv := newFakeServer(t, func(w http.ResponseWriter, _ *http.Request, req request, earlier []request) {
		switch {
		case req.Method == http.MethodPost && req.Path == authPath:
			io.WriteString(w, "x.y.z")
		case req.Path == nextV2Path && count(earlier, http.MethodPost, nextV2Path) == 0:
			http.NotFound(w, nil)
		case req.Path == nextV2Path || req.Path == nextV1Path:
			w.WriteHeader(http.StatusNoContent)
		case req.Path == inventoryPath:
			w.WriteHeader(http.StatusOK)
		default:
			http.NotFound(w, nil)
		}
	})
	d := Start(t, Options{
		ServerURL:    srv.URL,
		DeviceType:   "sensor-v1",
		ArtifactName: "release-1.0.0",
		Inventory:    map[string]string{"os": "test-os"},
	})
	reqs := srv.waitFor(t, d, "a second v2 next request and an inventory update", func(reqs []request) bool {
		return count(reqs, http.MethodPost, nextV2Path) >= 2 && count(reqs, http.MethodPut, inventoryPath) >= 1
	})
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	for i, r := range reqs {
		t.Logf("%d: %v Authorization=%q body=%s", i, r, r.Header.Get("Authorization"), r.Body)
	}
	if reqs[0].Path != authPath {
		t.Fatalf("first request %v, want the auth request", reqs[0])
	}
	for _, r := range reqs[1:] {
		if got := r.Header.Get("Authorization"); got != "Bearer x.y.z" {
			t.Errorf("%v: Authorization %q, want the token the server gave", r, got)
		}
		if r.Path == authPath {
			t.Errorf("the client authenticated again: %v", r)
		}
	}

	provides := map[string]string{"artifact_name": "release-1.0.0", "device_type": "sensor-v1"}
	i := slices.IndexFunc(reqs, func(r request) bool { return r.Path == nextV2Path })
	var v2 struct {
		DeviceProvides   map[string]string `json:"device_provides"`
		UpdateControlMap bool              `json:"update_control_map"`
	}
	if err := json.Unmarshal(reqs[i].Body, &v2); err != nil {
		t.Fatalf("v2 next body %q: %v", reqs[i].Body, err)
	}
	if fmt.Sprint(v2.DeviceProvides) != fmt.Sprint(provides) || !v2.UpdateControlMap {
		t.Errorf("v2 next body %s, want device_provides %v and update_control_map true", reqs[i].Body, provides)
	}
	// 404 on v2: the same poll goes on with POST v1, whose body is the
	// provides themselves.
	if i+1 >= len(reqs) || reqs[i+1].Method != http.MethodPost || reqs[i+1].Path != nextV1Path {
		t.Fatalf("after the 404 on v2 next: %v, want POST %s", reqs[i+1:], nextV1Path)
	}
	var v1 map[string]string
	if err := json.Unmarshal(reqs[i+1].Body, &v1); err != nil || fmt.Sprint(v1) != fmt.Sprint(provides) {
		t.Errorf("v1 next body %s (%v), want %v", reqs[i+1].Body, err, provides)
	}
	if n := count(reqs, http.MethodPost, nextV1Path); n != 1 {
		t.Errorf("%d v1 next requests, want only the one after the 404", n)
	}

	inv := reqs[slices.IndexFunc(reqs, func(r request) bool { return r.Path == inventoryPath })]
	var attrs []struct {
		Name  string `json:"name"`
		Value any    `json:"value"`
	}
	if err := json.Unmarshal(inv.Body, &attrs); err != nil {
		t.Fatalf("inventory body %q: %v", inv.Body, err)
	}
	got := map[string]any{}
	for _, a := range attrs {
		got[a.Name] = a.Value
	}
	for k, v := range map[string]string{"device_type": "sensor-v1", "artifact_name": "release-1.0.0", "os": "test-os"} {
		if got[k] != v {
			t.Errorf("inventory %s = %v, want %q (all: %s)", k, got[k], v, inv.Body)
		}
	}
	if v, _ := got["mender_client_version"].(string); !strings.HasPrefix(v, "3.4.0") {
		t.Errorf("inventory mender_client_version = %v, want 3.4.0...", got["mender_client_version"])
	}
}

// deploymentServer accepts the client, offers art as deployment id once
// and answers the deployment's status and log requests.
func deploymentServer(t *testing.T, id string, art *Artifact, deviceType string) *fakeServer {
	var srv *fakeServer
	srv = newFakeServer(t, func(w http.ResponseWriter, r *http.Request, req request, earlier []request) {
		deployment := "/api/devices/v1/deployments/device/deployments/" + id + "/"
		switch {
		case req.Method == http.MethodPost && req.Path == authPath:
			io.WriteString(w, "x.y.z")
		case req.Method == http.MethodPost && req.Path == nextV2Path && count(earlier, http.MethodPost, nextV2Path) == 0:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{
				"id": id,
				"artifact": map[string]any{
					"artifact_name":           art.Name,
					"device_types_compatible": []string{deviceType},
					"source":                  map[string]string{"uri": srv.URL + "/artifacts/" + id, "expire": "2099-01-01T00:00:00Z"},
				},
			})
		case req.Method == http.MethodPost && req.Path == nextV2Path:
			w.WriteHeader(http.StatusNoContent)
		case req.Method == http.MethodGet && req.Path == "/artifacts/"+id:
			// ServeContent sets Content-Length, which the client needs.
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(art.Bytes))
		case req.Method == http.MethodPut && (req.Path == deployment+"status" || req.Path == deployment+"log"):
			w.WriteHeader(http.StatusNoContent)
		case req.Method == http.MethodPut && req.Path == inventoryPath:
			w.WriteHeader(http.StatusOK)
		default:
			t.Errorf("unexpected request %v", req)
			http.NotFound(w, r)
		}
	})
	return srv
}

// statuses are the deployment statuses reported so far.
func statuses(t *testing.T, reqs []request) []string {
	var out []string
	for _, r := range reqs {
		if r.Method == http.MethodPut && strings.HasSuffix(r.Path, "/status") {
			var s struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(r.Body, &s); err != nil {
				t.Errorf("status body %q: %v", r.Body, err)
			}
			out = append(out, s.Status)
		}
	}
	return out
}

// compact drops repeats: the client reports some statuses more than once.
func compact(s []string) []string { return slices.Compact(slices.Clone(s)) }

// nextProvides is device_provides of the first v2 next request at or
// after reqs[from].
func nextProvides(t *testing.T, reqs []request, from int) map[string]string {
	t.Helper()
	i := slices.IndexFunc(reqs[from:], func(r request) bool { return r.Path == nextV2Path })
	if i < 0 {
		t.Fatalf("no v2 next request after request %d", from)
	}
	var body struct {
		DeviceProvides map[string]string `json:"device_provides"`
	}
	if err := json.Unmarshal(reqs[from+i].Body, &body); err != nil {
		t.Fatalf("v2 next body %q: %v", reqs[from+i].Body, err)
	}
	return body.DeviceProvides
}

// TestDeployment runs whole deployments: the client downloads the
// artifact, the module installs it (or fails) and the client reports.
func TestDeployment(t *testing.T) {
	t.Parallel()
	signer := GenerateKey(t, KeyECDSA)
	allStates := func(typ string, states ...string) []string {
		var out []string
		for _, s := range states {
			out = append(out, typ+" "+s)
		}
		return out
	}
	for _, tc := range []struct {
		name         string
		typ          string
		sign, verify bool
		wantStatuses []string
		wantCalls    []string
		// wantArtifact is the name the client has afterwards.
		wantArtifact string
		// wantLog is in the uploaded deployment log of a failure.
		wantLog string
	}{{
		name:         "installs",
		typ:          ModuleType,
		wantStatuses: []string{"downloading", "installing", "success"},
		wantCalls:    allStates(ModuleType, "Download", "SupportsRollback", "ArtifactInstall", "NeedsArtifactReboot", "ArtifactCommit", "Cleanup"),
		wantArtifact: "release-2",
	}, {
		name:         "signed",
		typ:          ModuleType,
		sign:         true,
		verify:       true,
		wantStatuses: []string{"downloading", "installing", "success"},
		wantCalls:    allStates(ModuleType, "Download", "SupportsRollback", "ArtifactInstall", "NeedsArtifactReboot", "ArtifactCommit", "Cleanup"),
		wantArtifact: "release-2",
	}, {
		name:         "module fails",
		typ:          FailingModuleType,
		wantStatuses: []string{"downloading", "installing", "failure"},
		wantCalls:    allStates(FailingModuleType, "Download", "SupportsRollback", "ArtifactInstall", "ArtifactFailure", "Cleanup"),
		// Without rollback the client cannot tell what is installed.
		wantArtifact: "release-2_INCONSISTENT",
		wantLog:      `Output (stderr) from command "/usr/share/mender/modules/v3/otaflow-test-fail": ` + FailureMessage + ": release-2",
	}, {
		name:         "unsigned refused",
		typ:          ModuleType,
		verify:       true,
		wantStatuses: []string{"downloading", "failure"},
		wantArtifact: "release-1",
		wantLog:      "expecting signed artifact, but no signature file found",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkHostUntouched(t)
			const id, deviceType = "dep-1", "sensor-v1"
			opts := ArtifactOptions{Name: "release-2", DeviceTypes: []string{deviceType}, Type: tc.typ}
			if tc.sign {
				opts.SigningKey = signer
			}
			art := WriteArtifact(t, opts)
			srv := deploymentServer(t, id, art, deviceType)
			dopts := Options{ServerURL: srv.URL, DeviceType: deviceType, ArtifactName: "release-1"}
			if tc.verify {
				dopts.ArtifactVerifyKey = signer.PublicPEM
			}
			d := Start(t, dopts)
			final := tc.wantStatuses[len(tc.wantStatuses)-1]
			var reported int // index of the final status request
			reqs := srv.waitFor(t, d, "the final status and a poll after it", func(reqs []request) bool {
				reported = slices.IndexFunc(reqs, func(r request) bool {
					return strings.HasSuffix(r.Path, "/status") && strings.Contains(string(r.Body), `"`+final+`"`)
				})
				return reported >= 0 && slices.ContainsFunc(reqs[reported:], func(r request) bool { return r.Path == nextV2Path })
			})
			current, err := d.CurrentArtifact()
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Stop(); err != nil {
				t.Fatal(err)
			}
			for i, r := range reqs {
				t.Logf("%d: %v Authorization=%q body=%.200s", i, r, r.Header.Get("Authorization"), r.Body)
			}

			if got := compact(statuses(t, reqs)); !slices.Equal(got, tc.wantStatuses) {
				t.Errorf("statuses %q, want %q", got, tc.wantStatuses)
			}
			if got := d.ModuleCalls(); !slices.Equal(got, tc.wantCalls) {
				t.Errorf("module calls %q, want %q", got, tc.wantCalls)
			}
			if current != tc.wantArtifact {
				t.Errorf("current artifact %q, want %q", current, tc.wantArtifact)
			}
			provides := nextProvides(t, reqs, reported)
			if provides["artifact_name"] != tc.wantArtifact || provides["device_type"] != deviceType {
				t.Errorf("device_provides after the deployment %v, want artifact_name %q", provides, tc.wantArtifact)
			}
			download := slices.IndexFunc(reqs, func(r request) bool { return r.Method == http.MethodGet && r.Path == "/artifacts/"+id })
			if download < 0 {
				t.Fatal("the client never downloaded the artifact")
			}
			if got := reqs[download].Header.Get("Authorization"); got != "" {
				t.Errorf("the download carried Authorization %q; the client sends none to the artifact URI", got)
			}

			installed, err := d.InstalledFile(art.PayloadName)
			if final == "success" {
				if err != nil || !bytes.Equal(installed, art.Payload) {
					t.Errorf("installed %s: %d bytes (%v), want the %d-byte payload", art.PayloadName, len(installed), err, len(art.Payload))
				}
				// ArtifactCommit re-authenticates first, then repeats
				// "installing".
				if n := count(reqs, http.MethodPost, authPath); n != 2 {
					t.Errorf("%d auth requests, want 2 (one before ArtifactCommit)", n)
				}
				if provides["rootfs-image."+ModuleType+".version"] != art.Name {
					t.Errorf("device_provides %v lack the payload's software version", provides)
				}
				if slices.ContainsFunc(reqs, func(r request) bool { return strings.HasSuffix(r.Path, "/log") }) {
					t.Error("the client uploaded a log for a successful deployment")
				}
				return
			}
			if err == nil {
				t.Errorf("a failed deployment installed %s", art.PayloadName)
			}
			upload := slices.IndexFunc(reqs, func(r request) bool {
				return r.Method == http.MethodPut && r.Path == "/api/devices/v1/deployments/device/deployments/"+id+"/log"
			})
			if upload < reported {
				t.Fatalf("no log upload after the failure status")
			}
			var uploaded struct {
				Messages []LogEntry `json:"messages"`
			}
			if err := json.Unmarshal(reqs[upload].Body, &uploaded); err != nil || len(uploaded.Messages) == 0 {
				t.Fatalf("log upload %q: %v", reqs[upload].Body, err)
			}
			hasWanted := func(e LogEntry) bool { return strings.Contains(e.Message, tc.wantLog) }
			if !slices.ContainsFunc(uploaded.Messages, hasWanted) {
				t.Errorf("the uploaded log has no message with %q:\n%s", tc.wantLog, reqs[upload].Body)
			}
			if local, err := d.DeploymentLog(id); err != nil || !slices.ContainsFunc(local, hasWanted) {
				t.Errorf("deployment log on the device (%v) lacks %q: %v", err, tc.wantLog, local)
			}
		})
	}
}
