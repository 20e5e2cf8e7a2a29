package swupdatetest

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const checkTimeout = 30 * time.Second

// check runs `swupdate -c -i swu -k cert -H hw` (check-only mode, no
// server) and returns its verdict and output.
//
// The 2022.12 `-c -i` client is racy: it learns the result by polling the
// installer's status and may see the idle state before the install began
// ("[endupdate] : SWUpdate was successful !" before "Software Update
// started !"); it then exits while the installer still runs (which fails
// on files removed under it). Such runs, and runs without a final status,
// say nothing about the image and are repeated. The exit status races too (core/pctl.c sigchld_handler
// overwrites the global exit_code when the chunks_downloader child exits
// at shutdown), so the verdict is the final status the installer logs:
// "SWUPDATE successful !" or "SWUPDATE failed [1] ...".
func check(t *testing.T, swu, cert, hw string) (accepted bool, out string) {
	t.Helper()
	const attempts = 3
	for i := 1; ; i++ {
		out, err := checkOnce(t, swu, cert, hw)
		end, started := strings.Index(out, "[endupdate]"), strings.Index(out, "Software Update started !")
		succeeded := strings.Contains(out, "SWUPDATE successful !")
		failed := strings.Contains(out, "SWUPDATE failed [1]")
		if started < 0 || (end >= 0 && end < started) || succeeded == failed {
			if i == attempts {
				t.Fatalf("swupdate -c gave no verdict in %d runs; last (exit %v):\n%s", attempts, err, out)
			}
			t.Logf("swupdate -c ended without a verdict (exit %v): running it again", err)
			continue
		}
		if succeeded == (err != nil) {
			t.Logf("swupdate -c logged the verdict accepted=%v but exited with %v (the shutdown race)", succeeded, err)
		}
		return succeeded, out
	}
}

func checkOnce(t *testing.T, swu, cert, hw string) (string, error) {
	t.Helper()
	tmp, err := os.MkdirTemp("", "swu")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), "-c", "-i", swu, "-k", cert, "-H", hw, "-l", "4")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	// Its own group, so the kill on timeout reaches the children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("swupdate -c did not finish within %v:\n%s", checkTimeout, out)
	}
	return string(out), err
}

func TestCheckAcceptsBuiltImage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	signer := NewSigner(t, dir)
	swu := BuildSWU(t, dir, Image{
		Signer: signer,
		// An odd length: the archive pads the entry.
		Payload:        append(bytes.Repeat([]byte("firmware "), 1000), 'x'),
		OutPath:        filepath.Join(dir, "out", "payload.bin"),
		HardwareCompat: []string{"0.9", "1.0"},
		Version:        "2.0.0",
	})
	if ok, out := check(t, swu, signer.CertFile, "sandbox:1.0"); !ok {
		t.Fatalf("swupdate -c refused the image:\n%s", out)
	}
	// Check mode installs nothing.
	if _, err := os.Stat(filepath.Join(dir, "out", "payload.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("check mode wrote the payload (stat: %v)", err)
	}
}

func TestCheckRefusesBadImages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	signer := NewSigner(t, dir)
	payload := bytes.Repeat([]byte("firmware "), 1000)
	img := Image{Signer: signer, Payload: payload, OutPath: filepath.Join(dir, "out", "payload.bin")}
	good, err := Build(dir, img)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, desc, sig, payload []byte) string {
		p := filepath.Join(dir, name)
		if err := writeSWU(p, desc, sig, "payload.bin", payload); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := bytes.Clone(payload)
	flipped[len(flipped)/2] ^= 0x01
	wrongSHA := img
	wrongSHA.WrongSHA256, wrongSHA.FileName = true, "wrong-sha.swu"
	other := NewSigner(t, t.TempDir())

	for _, tc := range []struct {
		name, swu, cert, hw string
		want                string // in the log: the reason of the refusal
	}{
		{
			name: "payload changed after signing",
			swu:  write("payload.swu", good.SWDescription, good.Signature, flipped),
			cert: signer.CertFile, hw: "sandbox:1.0", want: "HASH mismatch",
		},
		{
			name: "sw-description changed after signing",
			swu: write("desc.swu", bytes.Replace(good.SWDescription, []byte(`"1.0.0"`), []byte(`"9.0.0"`), 1),
				good.Signature, payload),
			cert: signer.CertFile, hw: "sandbox:1.0", want: "Signature verification failed",
		},
		{
			name: "archive byte changed (cpio checksum)",
			swu: func() string {
				b, err := os.ReadFile(good.Path)
				if err != nil {
					t.Fatal(err)
				}
				// In sw-description, which SWUpdate reads (and sums) first.
				i := bytes.Index(b, []byte(`"1.0.0"`))
				b[i+1] = '9'
				p := filepath.Join(dir, "flipped.swu")
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}(),
			cert: signer.CertFile, hw: "sandbox:1.0", want: "Checksum WRONG",
		},
		{
			name: "signed by another key",
			swu:  good.Path, cert: other.CertFile, hw: "sandbox:1.0", want: "Authentication of all signatures failed",
		},
		{
			name: "hardware revision not listed",
			swu:  good.Path, cert: signer.CertFile, hw: "sandbox:2.0", want: "SW not compatible with hardware",
		},
		{
			name: "WrongSHA256",
			swu:  BuildSWU(t, dir, wrongSHA), cert: signer.CertFile, hw: "sandbox:1.0", want: "HASH mismatch",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ok, out := check(t, tc.swu, tc.cert, tc.hw)
			if ok {
				t.Fatalf("swupdate -c accepted the image:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("swupdate -c refused the image, but not with %q:\n%s", tc.want, out)
			}
		})
	}
}

// ddiRequest is what the fake DDI server saw.
type ddiRequest struct {
	Method, Path, Auth string
	Body               []byte
}

// fakeDDI answers the hawkBit root poll with a 1 s polling interval and
// records every request. With an action, the root links its deploymentBase
// until the device reports the deployment finished; with an artifact, the
// deploymentBase offers it as one chunk of one artifact.
type fakeDDI struct {
	srv      *httptest.Server
	caFile   string
	base     string // /{tenant}/controller/v1/{id}
	action   string
	artifact []byte

	mu       sync.Mutex
	requests []ddiRequest
	finished bool
	changed  chan struct{} // receives after each request
}

const artifactName = "fw-2.0.0.swu"

func newFakeDDI(t *testing.T, tenant, id, action string, artifact []byte) *fakeDDI {
	t.Helper()
	f := &fakeDDI{
		base:     "/" + tenant + "/controller/v1/" + id,
		action:   action,
		artifact: artifact,
		changed:  make(chan struct{}, 1),
	}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.caFile = filepath.Join(t.TempDir(), "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})
	if err := os.WriteFile(f.caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// feedback is the part of a DDI feedback body the tests look at.
type feedback struct {
	Status struct {
		Execution string `json:"execution"`
		Result    struct {
			Finished string `json:"finished"`
		} `json:"result"`
		Details []string `json:"details"`
	} `json:"status"`
}

func (f *fakeDDI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	f.mu.Lock()
	f.requests = append(f.requests, ddiRequest{Method: r.Method, Path: r.URL.Path, Auth: r.Header.Get("Authorization"), Body: body})
	finished := f.finished
	f.mu.Unlock()
	defer func() {
		select {
		case f.changed <- struct{}{}:
		default:
		}
	}()
	w.Header().Set("Content-Type", "application/json")
	deployment := f.base + "/deploymentBase/" + f.action
	download := f.base + "/softwaremodules/" + f.action + "/artifacts/" + artifactName
	switch {
	case r.Method == http.MethodGet && r.URL.Path == f.base:
		links := "{}"
		if f.action != "" && !finished {
			links = fmt.Sprintf(`{"deploymentBase":{"href":"%s%s"}}`, f.srv.URL, deployment)
		}
		fmt.Fprintf(w, `{"config":{"polling":{"sleep":"00:00:01"}},"_links":%s}`, links)
	case r.Method == http.MethodPut && r.URL.Path == f.base+"/configData":
		w.WriteHeader(http.StatusOK)
	case f.action != "" && r.Method == http.MethodGet && r.URL.Path == deployment:
		if f.artifact == nil {
			fmt.Fprintf(w, `{"id":%q}`, f.action)
			return
		}
		sha1sum, sha256sum := sha1.Sum(f.artifact), sha256.Sum256(f.artifact)
		href := f.srv.URL + download
		fmt.Fprintf(w, `{"id":%q,"deployment":{"download":"attempt","update":"attempt","chunks":[{"part":"os",`+
			`"version":"2.0.0","name":"fw","artifacts":[{"filename":%q,"size":%d,"hashes":{"sha1":"%x","sha256":"%x"},`+
			`"_links":{"download":{"href":%q},"download-http":{"href":%q}}}]}]}}`,
			f.action, artifactName, len(f.artifact), sha1sum, sha256sum, href, href)
	case f.artifact != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.URL.Path == download:
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, artifactName, time.Time{}, bytes.NewReader(f.artifact))
	case f.action != "" && r.Method == http.MethodPost && r.URL.Path == deployment+"/feedback":
		var fb feedback
		if err := json.Unmarshal(body, &fb); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if fb.Status.Execution == "closed" || slices.Contains(fb.Status.Details, "All Chunks Installed.") {
			f.mu.Lock()
			f.finished = true
			f.mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeDDI) seen() []ddiRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ddiRequest(nil), f.requests...)
}

// waitFor waits until cond holds for the requests seen so far.
func (f *fakeDDI) waitFor(t *testing.T, p *Process, what string, cond func([]ddiRequest) bool) []ddiRequest {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		reqs := f.seen()
		if cond(reqs) {
			return reqs
		}
		select {
		case <-f.changed:
		case <-p.Exited():
			t.Fatalf("swupdate exited before %s; requests %+v; log:\n%s", what, reqs, p.Log())
		case <-deadline:
			t.Fatalf("no %s within 20s; requests %+v; log:\n%s", what, reqs, p.Log())
		}
	}
}

func count(reqs []ddiRequest, method, path string) int {
	n := 0
	for _, r := range reqs {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

func TestRunnerPollsDDI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		cfg      Config
		wantAuth string
	}{
		{name: "target token", cfg: Config{TargetToken: "tt-0123456789abcdef"}, wantAuth: "TargetToken tt-0123456789abcdef"},
		{name: "gateway token", cfg: Config{GatewayToken: "gw-fedcba9876543210"}, wantAuth: "GatewayToken gw-fedcba9876543210"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ddi := newFakeDDI(t, "fleet", "sw-0001", "", nil)
			cfg := tc.cfg
			cfg.URL, cfg.Tenant, cfg.ControllerID, cfg.CAFile = ddi.srv.URL, "fleet", "sw-0001", ddi.caFile
			cfg.Signer = NewSigner(t, t.TempDir())
			cfg.Identify = map[string]string{"version": "1.0.0", "label.site": "lab"}
			p := Start(t, cfg)

			root := ddi.base
			reqs := ddi.waitFor(t, p, "two polls after configData", func(rs []ddiRequest) bool {
				return count(rs, http.MethodPut, root+"/configData") >= 1 && count(rs, http.MethodGet, root) >= 2
			})
			if reqs[0].Method != http.MethodGet || reqs[0].Path != root {
				t.Errorf("first request %s %s, want GET %s", reqs[0].Method, reqs[0].Path, root)
			}
			for _, r := range reqs {
				if r.Auth != tc.wantAuth {
					t.Errorf("%s %s: Authorization %q, want %q", r.Method, r.Path, r.Auth, tc.wantAuth)
				}
				if r.Method == http.MethodPut {
					var put struct {
						Data map[string]string `json:"data"`
					}
					if err := json.Unmarshal(r.Body, &put); err != nil {
						t.Fatalf("configData body %q: %v", r.Body, err)
					}
					if want := cfg.Identify; fmt.Sprint(put.Data) != fmt.Sprint(want) {
						t.Errorf("configData data %v, want %v", put.Data, want)
					}
				}
			}
			// No configData link: the attributes go once, at start.
			if n := count(reqs, http.MethodPut, root+"/configData"); n != 1 {
				t.Errorf("%d configData PUTs, want 1", n)
			}

			// The daemon, its suricatta and chunks_downloader children.
			if m := groupMembers(p.Pgid()); len(m) < 3 {
				t.Fatalf("swupdate's process group has %v, want at least 3 processes", m)
			}
			if err := p.Stop(); err != nil {
				t.Fatal(err)
			}
			if m := groupMembers(p.Pgid()); len(m) != 0 {
				t.Fatalf("processes %v of swupdate's group left after Stop", m)
			}
			if _, err := os.Stat(p.tmpDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("private TMPDIR left behind (stat: %v)", err)
			}
			n := len(ddi.seen())
			time.Sleep(1500 * time.Millisecond)
			if m := len(ddi.seen()); m != n {
				t.Errorf("%d requests after Stop", m-n)
			}
		})
	}
}

func TestRunnerConfirmState(t *testing.T) {
	t.Parallel()
	ddi := newFakeDDI(t, "DEFAULT", "sw-0002", "7", nil)
	p := Start(t, Config{
		URL: ddi.srv.URL, Tenant: "DEFAULT", ControllerID: "sw-0002", CAFile: ddi.caFile,
		TargetToken:  "tok",
		Signer:       NewSigner(t, t.TempDir()),
		ConfirmState: 2, // testing: the update is reported as closed/success
	})
	path := ddi.base + "/deploymentBase/7/feedback"
	reqs := ddi.waitFor(t, p, "deployment feedback", func(rs []ddiRequest) bool {
		return count(rs, http.MethodPost, path) > 0
	})
	for _, fb := range feedbacks(t, reqs, path) {
		if fb.Status.Execution != "closed" || fb.Status.Result.Finished != "success" {
			t.Fatalf("feedback %s/%s %q, want closed/success", fb.Status.Execution, fb.Status.Result.Finished, fb.Status.Details)
		}
	}
	if got := count(reqs, http.MethodGet, ddi.base+"/deploymentBase/7"); got == 0 {
		t.Errorf("feedback without reading the deploymentBase first: %+v", reqs)
	}
}

func TestRenderRejectsBadConfig(t *testing.T) {
	t.Parallel()
	signer := &Signer{CertFile: "/c.pem"}
	good := Config{URL: "https://127.0.0.1:1", Tenant: "t", ControllerID: "d", Signer: signer}
	if _, _, err := render(good); err != nil {
		t.Fatalf("render(good): %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"space in id":   func(c *Config) { c.ControllerID = "a b" },
		"empty tenant":  func(c *Config) { c.Tenant = "" },
		"both tokens":   func(c *Config) { c.TargetToken, c.GatewayToken = "a", "b" },
		"no signer":     func(c *Config) { c.Signer = nil },
		"confirm state": func(c *Config) { c.ConfirmState = 4 },
		"colon in hw":   func(c *Config) { c.HardwareType = "a:b" },
		"extra arg":     func(c *Config) { c.ExtraSuricattaArgs = []string{"-n 1k"} },
	} {
		c := good
		mut(&c)
		if _, _, err := render(c); err == nil {
			t.Errorf("%s: render accepted %+v", name, c)
		}
	}
}

func TestRenderConfig(t *testing.T) {
	t.Parallel()
	conf, args, err := render(Config{
		URL: "https://127.0.0.1:8443", Tenant: "fleet", ControllerID: "sw-0001",
		TargetToken: `to"k\en`, CAFile: "/ca.pem", Signer: &Signer{CertFile: "/c.pem"},
		Identify:     map[string]string{"version": "1.0.0", "board": "x"},
		ConfirmState: 2, ExtraSuricattaArgs: []string{"-n", "20k"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-k", "/c.pem", "-H", "sandbox:1.0", "-u", "-t fleet -i sw-0001 -u https://127.0.0.1:8443 -c 2 -n 20k"}
	if fmt.Sprint(args) != fmt.Sprint(want) {
		t.Errorf("args %q, want %q", args, want)
	}
	for _, s := range []string{
		`targettoken = "to\"k\\en";`,
		`cafile = "/ca.pem";`,
		"identify = (\n\t{ name = \"board\"; value = \"x\"; },\n\t{ name = \"version\"; value = \"1.0.0\"; }\n);",
		"globals:",
	} {
		if !strings.Contains(conf, s) {
			t.Errorf("swupdate.cfg lacks %q:\n%s", s, conf)
		}
	}
}

func TestSWDescriptionRejectsBadImages(t *testing.T) {
	t.Parallel()
	for name, img := range map[string]Image{
		"relative path": {OutPath: "out/payload.bin", PayloadName: "p"},
		"long path":     {OutPath: "/" + strings.Repeat("a", 254), PayloadName: "p"},
		"slash in name": {OutPath: "/out", PayloadName: "a/b"},
		"trailer name":  {OutPath: "/out", PayloadName: cpioTrailer},
	} {
		if _, err := swDescription(img); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// feedbacks decodes the deployment feedback the device posted, in order.
func feedbacks(t *testing.T, reqs []ddiRequest, path string) []feedback {
	t.Helper()
	var out []feedback
	for _, r := range reqs {
		if r.Method != http.MethodPost || r.Path != path {
			continue
		}
		var fb feedback
		if err := json.Unmarshal(r.Body, &fb); err != nil {
			t.Fatalf("feedback body %q: %v", r.Body, err)
		}
		out = append(out, fb)
	}
	return out
}

// TestRunnerInstallsBuiltImage runs the whole suricatta update: the image
// BuildSWU made is downloaded from the deploymentBase's link and installed
// by the rawfile handler; a WrongSHA256 image fails with closed/failure.
func TestRunnerInstallsBuiltImage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		wrongSHA  bool
		wantFinal string // execution/finished of the last feedback
	}{
		{name: "success", wantFinal: "proceeding/none"},
		{name: "hash mismatch", wrongSHA: true, wantFinal: "closed/failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			signer := NewSigner(t, dir)
			payload := bytes.Repeat([]byte("firmware 2.0.0\n"), 20000) // 300 kB
			out := filepath.Join(dir, "out", "payload.bin")
			swu := BuildSWU(t, dir, Image{Signer: signer, Payload: payload, OutPath: out, Version: "2.0.0", WrongSHA256: tc.wrongSHA})
			artifact, err := os.ReadFile(swu)
			if err != nil {
				t.Fatal(err)
			}
			ddi := newFakeDDI(t, "fleet", "sw-0003", "8", artifact)
			p := Start(t, Config{
				URL: ddi.srv.URL, Tenant: "fleet", ControllerID: "sw-0003", CAFile: ddi.caFile,
				TargetToken: "tok", Signer: signer, Identify: map[string]string{"version": "1.0.0"},
			})
			path := ddi.base + "/deploymentBase/8/feedback"
			reqs := ddi.waitFor(t, p, "the final feedback", func(rs []ddiRequest) bool {
				fbs := feedbacks(t, rs, path)
				if len(fbs) == 0 {
					return false
				}
				last := fbs[len(fbs)-1].Status
				return last.Execution == "closed" || slices.Contains(last.Details, "All Chunks Installed.")
			})
			fbs := feedbacks(t, reqs, path)
			last := fbs[len(fbs)-1].Status
			if got := last.Execution + "/" + last.Result.Finished; got != tc.wantFinal {
				t.Fatalf("last feedback %s %q, want %s; log:\n%s", got, last.Details, tc.wantFinal, p.Log())
			}
			if n := count(reqs, http.MethodGet, ddi.base+"/softwaremodules/8/artifacts/"+artifactName); n != 1 {
				t.Errorf("%d artifact downloads, want 1", n)
			}
			got, err := os.ReadFile(out)
			if tc.wrongSHA {
				// The details say "No suitable .swu image found"; the
				// reason is in the client's log.
				if !strings.Contains(p.Log(), "HASH mismatch") {
					t.Errorf("the install failed (details %q), but not at the hash:\n%s", last.Details, p.Log())
				}
				// The rawfile handler streams into OutPath before the hash
				// is known: a failed install may leave a partial file.
				return
			}
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("installed payload: %d bytes (err %v), want the %d payload bytes", len(got), err, len(payload))
			}
			if err := p.WaitLog("SWUPDATE successful !", 10*time.Second); err != nil {
				t.Error(err)
			}
		})
	}
}
