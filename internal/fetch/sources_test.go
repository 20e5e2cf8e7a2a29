package fetch_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"
	"golang.org/x/net/http/httpproxy"

	"github.com/otaflow/otaflow/internal/egress"
	"github.com/otaflow/otaflow/internal/fetch"
	"github.com/otaflow/otaflow/internal/fetch/fetchtest"
	"github.com/otaflow/otaflow/internal/s3test"
)

func sum(b []byte) string {
	d := sha256.Sum256(b)
	return hex.EncodeToString(d[:])
}

func readAll(t *testing.T, img *fetch.Image) []byte {
	t.Helper()
	defer img.Body.Close()
	b, err := io.ReadAll(img.Body)
	if err != nil {
		t.Fatalf("read image: %v", err)
	}
	return b
}

func wantForbidden(t *testing.T, err error, rule egress.Rule) {
	t.Helper()
	var fe *egress.ForbiddenError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v, want an egress refusal (%s)", err, rule)
	}
	if fe.Rule != rule {
		t.Errorf("refused by rule %q, want %q: %v", fe.Rule, rule, err)
	}
	if !fetch.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = false; an egress refusal is permanent", err)
	}
}

func TestEgressPolicyRefusesByDefault(t *testing.T) {
	srv := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request reached the server: %s", r.URL)
	})
	f := fetch.New(fetch.Options{Proxy: &httpproxy.Config{}, Resolver: fetchtest.Loopback("rebind.example.com")})
	t.Cleanup(f.CloseIdleConnections)
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	for _, tc := range []struct {
		url  string
		rule egress.Rule
	}{
		{srv.URL + "/fw.bin", egress.RuleLoopback},
		{"http://[::ffff:127.0.0.1]" + port + "/fw.bin", egress.RuleLoopback},
		{"http://rebind.example.com" + port + "/fw.bin", egress.RuleLoopback},
		{"http://169.254.169.254/latest/meta-data/", egress.RuleMetadata},
		{"http://metadata.google.internal/computeMetadata/v1/", egress.RuleMetadata},
		{"http://minio.storage.svc:9000/fw.bin", egress.RuleClusterInternal},
		{"https://registry/fw.bin", egress.RuleClusterInternal},
		{"s3://firmware/fw.bin", ""}, // the endpoint, below
		{"oci://registry.infra.svc.cluster.local/fw:1.0", egress.RuleClusterInternal},
		{"oci://127.0.0.1" + port + "/fw:1.0", egress.RuleLoopback},
	} {
		t.Run(tc.url, func(t *testing.T) {
			src := fetch.Source{URL: tc.url, ExpectedSize: -1}
			if tc.rule == "" {
				src.S3 = fetch.S3Options{Endpoint: "169.254.169.254", Insecure: true}
				tc.rule = egress.RuleMetadata
			}
			_, err := f.Fetch(t.Context(), src)
			wantForbidden(t, err, tc.rule)
		})
	}
}

// TestRedirectToForbiddenAddress: an admitted server cannot redirect the
// fetch to an address the policy refuses, by literal or by a name that
// resolves there.
func TestRedirectToForbiddenAddress(t *testing.T) {
	srv := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	f := newFetcher(t, fetch.Options{
		Egress:   mustPolicy(egress.Config{Allow: []string{"127.0.0.1/32"}}),
		Resolver: fetchtest.Resolver{"inside.example.com": {netip.MustParseAddr("127.0.0.2")}},
	})
	for _, tc := range []struct {
		to   string
		rule egress.Rule
	}{
		{"http://169.254.169.254/latest/meta-data/iam/", egress.RuleMetadata},
		{"http://127.0.0.2:8080/", egress.RuleLoopback},
		{"http://[::1]:8080/", egress.RuleLoopback},
		{"http://kube-dns.kube-system.svc/", egress.RuleClusterInternal},
		{"http://inside.example.com:8080/", egress.RuleLoopback},
	} {
		t.Run(tc.to, func(t *testing.T) {
			_, _, err := f.Open(t.Context(), srv.URL+"/?to="+url.QueryEscape(tc.to), -1)
			wantForbidden(t, err, tc.rule)
		})
	}
}

// TestCredentialsStayWithTheirHost: basic and bearer credentials reach the
// source, and never another host, port or scheme a redirect leads to, even
// when a later hop returns to the first host.
func TestCredentialsStayWithTheirHost(t *testing.T) {
	content := []byte("firmware for the authorized")
	var mu sync.Mutex
	var hops []string // "server Authorization", in order
	record := func(name string, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hops = append(hops, name+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		if to := r.URL.Query().Get("to"); to != "" {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		w.Write(content)
	}
	origin := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) { record("origin", w, r) })
	other := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) { record("other", w, r) })
	// The same listener under another name is another host.
	mirrorURL := "http://" + fetchtest.WithHost(strings.TrimPrefix(origin.URL, "http://"), "mirror.example.com")
	f := newFetcher(t, fetch.Options{Resolver: fetchtest.Loopback("mirror.example.com")})
	basic := &fetch.Credentials{Username: "alice", Password: "s3cr3t-pw"}
	bearer := &fetch.Credentials{Token: "t0ken-value"}
	const b, t0 = "Basic YWxpY2U6czNjcjN0LXB3", "Bearer t0ken-value"

	for _, tc := range []struct {
		name  string
		creds *fetch.Credentials
		path  string
		want  []string
	}{
		{"basic, no redirect", basic, "/fw.bin", []string{"origin " + b}},
		{"bearer, same origin redirect", bearer, "/?to=/fw.bin", []string{"origin " + t0, "origin " + t0}},
		{"bearer, another port", bearer, "/?to=" + url.QueryEscape(other.URL+"/fw.bin"), []string{"origin " + t0, "other "}},
		{"basic, another host name", basic, "/?to=" + url.QueryEscape(mirrorURL+"/fw.bin"), []string{"origin " + b, "origin "}},
		{"bearer, away and back", bearer, "/?to=" + url.QueryEscape(other.URL+"/?to="+url.QueryEscape(origin.URL+"/fw.bin")),
			[]string{"origin " + t0, "other ", "origin "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			hops = nil
			mu.Unlock()
			img, err := f.Fetch(t.Context(), fetch.Source{URL: origin.URL + tc.path, ExpectedSize: -1, Credentials: tc.creds})
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, img); !bytes.Equal(got, content) {
				t.Fatalf("read %q", got)
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.Join(hops, " | ") != strings.Join(tc.want, " | ") {
				t.Errorf("hops and their Authorization:\n got %q\nwant %q", hops, tc.want)
			}
		})
	}
}

func TestCredentialsMustFitTheScheme(t *testing.T) {
	f := newFetcher(t, fetch.Options{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("unexpected request to %s", r.URL)
		return nil, errors.New("no network in this test")
	})})
	for _, tc := range []struct {
		url   string
		creds fetch.Credentials
	}{
		{"https://firmware.example.com/fw.bin", fetch.Credentials{AccessKeyID: "AKIA", SecretAccessKey: "secret"}},
		{"https://firmware.example.com/fw.bin", fetch.Credentials{Username: "u", Password: "p", Token: "t"}},
		{"s3://firmware/fw.bin", fetch.Credentials{Username: "u", Password: "p"}},
		{"s3://firmware/fw.bin", fetch.Credentials{AccessKeyID: "AKIA"}},
		{"oci://registry.example.com/fw:1", fetch.Credentials{SecretAccessKey: "x"}},
		{"https://alice:pw@firmware.example.com/fw.bin", fetch.Credentials{Token: "t"}},
	} {
		_, err := f.Fetch(t.Context(), fetch.Source{URL: tc.url, ExpectedSize: -1, Credentials: &tc.creds})
		if err == nil || !fetch.IsPermanent(err) {
			t.Errorf("%s with %v: error %v, want a permanent refusal", tc.url, tc.creds, err)
		}
	}
}

// TestProxiedTargetsChecked: with a proxy configured, the proxy itself may
// be anywhere (the operator chose it), and a target is checked by name
// before the request is handed over.
func TestProxiedTargetsChecked(t *testing.T) {
	content := []byte("through the proxy")
	var got []string
	var mu sync.Mutex
	proxy := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.String())
		mu.Unlock()
		w.Write(content)
	})
	f := fetch.New(fetch.Options{Proxy: &httpproxy.Config{HTTPProxy: proxy.URL}})
	t.Cleanup(f.CloseIdleConnections)
	body, _, err := f.Open(t.Context(), "http://firmware.example.com/fw.bin", -1)
	if err != nil {
		t.Fatalf("fetch through the proxy: %v", err)
	}
	b, _ := io.ReadAll(body)
	body.Close()
	if !bytes.Equal(b, content) || len(got) != 1 || got[0] != "http://firmware.example.com/fw.bin" {
		t.Errorf("read %q; proxy saw %v", b, got)
	}
	_, _, err = f.Open(t.Context(), "http://metadata.google.internal/computeMetadata/v1/", -1)
	wantForbidden(t, err, egress.RuleMetadata)
	if len(got) != 1 {
		t.Errorf("a refused target reached the proxy: %v", got)
	}
}

func TestS3Source(t *testing.T) {
	s3 := s3test.Start(t)
	bucket := s3.NewBucket(t)
	content := randomBytes(300_000)
	if _, err := s3.Client().PutObject(t.Context(), bucket, "releases/sensor 2.1.0.bin", bytes.NewReader(content), int64(len(content)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	good := &fetch.Credentials{AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey}
	opts := fetch.S3Options{Endpoint: s3.Endpoint, Region: s3.Region, Insecure: s3.Insecure}
	url := "s3://" + bucket + "/releases/sensor%202.1.0.bin"
	f := newFetcher(t, fetch.Options{MaxBytes: 1 << 20})

	img, err := f.Fetch(t.Context(), fetch.Source{URL: url, ExpectedSize: int64(len(content)), Credentials: good, S3: opts})
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if img.Size != int64(len(content)) || !bytes.Equal(readAll(t, img), content) {
		t.Fatalf("object does not read back (size %d)", img.Size)
	}

	for _, tc := range []struct {
		name      string
		src       fetch.Source
		permanent bool
		check     func(t *testing.T, err error)
	}{
		{"wrong secret key", fetch.Source{URL: url, Credentials: &fetch.Credentials{AccessKeyID: s3.AccessKey, SecretAccessKey: "wrong-secret-key"}}, false,
			func(t *testing.T, err error) {
				if !errors.Is(err, fetch.ErrUnauthorized) {
					t.Errorf("error %v, want ErrUnauthorized", err)
				}
			}},
		{"anonymous", fetch.Source{URL: url}, false,
			func(t *testing.T, err error) {
				if !errors.Is(err, fetch.ErrUnauthorized) {
					t.Errorf("error %v, want ErrUnauthorized", err)
				}
			}},
		{"missing key", fetch.Source{URL: "s3://" + bucket + "/not-there.bin", Credentials: good}, false,
			func(t *testing.T, err error) {
				if !strings.Contains(err.Error(), "NoSuchKey") {
					t.Errorf("error %v, want NoSuchKey", err)
				}
			}},
		{"size mismatch", fetch.Source{URL: url, Credentials: good, ExpectedSize: int64(len(content)) - 1}, true,
			func(t *testing.T, err error) {
				var sm *fetch.SizeMismatchError
				if !errors.As(err, &sm) {
					t.Errorf("error %v, want SizeMismatchError", err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.src.ExpectedSize == 0 {
				tc.src.ExpectedSize = -1
			}
			tc.src.S3 = opts
			_, err := f.Fetch(t.Context(), tc.src)
			if err == nil {
				t.Fatal("fetch succeeded")
			}
			tc.check(t, err)
			if fetch.IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v (%v)", !tc.permanent, tc.permanent, err)
			}
			if strings.Contains(err.Error(), s3.SecretKey) || strings.Contains(err.Error(), "wrong-secret-key") {
				t.Errorf("error shows a secret key: %v", err)
			}
		})
	}

	small := newFetcher(t, fetch.Options{MaxBytes: 1000})
	_, err = small.Fetch(t.Context(), fetch.Source{URL: url, ExpectedSize: -1, Credentials: good, S3: opts})
	var tooLarge *fetch.TooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Size != int64(len(content)) {
		t.Errorf("object over the limit: error %v, want TooLargeError from the announced size", err)
	}

	// The endpoint is subject to the egress policy like any host.
	strict := newFetcher(t, fetch.Options{Egress: egress.Default()})
	_, err = strict.Fetch(t.Context(), fetch.Source{URL: url, ExpectedSize: -1, Credentials: good, S3: opts})
	wantForbidden(t, err, egress.RuleLoopback)
}

func TestOCISource(t *testing.T) {
	reg := fetchtest.StartRegistry(t, "robot", "registry-pw-1")
	img := randomBytes(200_000)
	other := []byte("release notes")
	m := reg.Push(t, "firmware/sensor", "2.1.0", fetchtest.FirmwareLayer(img))
	marked := reg.Push(t, "firmware/sensor", "marked",
		fetchtest.Layer{MediaType: "text/plain", Title: "NOTES.txt", Data: other},
		fetchtest.Layer{MediaType: fetch.ImageLayerMediaType, Title: "fw.bin", Data: img})
	reg.Push(t, "firmware/sensor", "ambiguous",
		fetchtest.Layer{MediaType: "text/plain", Title: "NOTES.txt", Data: other},
		fetchtest.FirmwareLayer(img))
	reg.Push(t, "firmware/sensor", "empty")
	reg.PushIndex(t, "firmware/sensor", "multi", m, marked)

	creds := &fetch.Credentials{Username: "robot", Password: "registry-pw-1"}
	base := "oci://" + reg.Addr + "/firmware/sensor"
	f := newFetcher(t, fetch.Options{MaxBytes: 1 << 20})
	fetchOK := func(t *testing.T, url string) *fetch.Image {
		t.Helper()
		got, err := f.Fetch(t.Context(), fetch.Source{URL: url, SHA256: sum(img), ExpectedSize: int64(len(img)), Credentials: creds, OCI: fetch.OCIOptions{Insecure: true}})
		if err != nil {
			t.Fatalf("fetch %s: %v", url, err)
		}
		if !bytes.Equal(readAll(t, got), img) || got.Size != int64(len(img)) {
			t.Fatalf("fetch %s: not the image", url)
		}
		return got
	}

	t.Run("tag", func(t *testing.T) {
		got := fetchOK(t, base+":2.1.0")
		if got.ManifestDigest != m.Digest.String() {
			t.Errorf("manifest digest %q, want %s (what the tag resolves to)", got.ManifestDigest, m.Digest)
		}
	})
	t.Run("digest", func(t *testing.T) {
		if got := fetchOK(t, base+"@"+m.Digest.String()); got.ManifestDigest != m.Digest.String() {
			t.Errorf("manifest digest %q, want %s", got.ManifestDigest, m.Digest)
		}
	})
	t.Run("marked layer among several", func(t *testing.T) { fetchOK(t, base+":marked") })

	for _, tc := range []struct {
		name      string
		src       fetch.Source
		permanent bool
		want      func(error) bool
		msg       string
	}{
		{"several layers", fetch.Source{URL: base + ":ambiguous"}, true, isErr(fetch.ErrArtifact), `"NOTES.txt" (text/plain), "fw.bin"`},
		{"no layers", fetch.Source{URL: base + ":empty"}, true, isErr(fetch.ErrArtifact), "no layers"},
		{"index", fetch.Source{URL: base + ":multi"}, true, isErr(fetch.ErrArtifact), "image index"},
		{"unknown tag", fetch.Source{URL: base + ":9.9.9"}, false, func(err error) bool { return strings.Contains(err.Error(), "not found") }, "not found"},
		{"wrong password", fetch.Source{URL: base + ":2.1.0", Credentials: &fetch.Credentials{Username: "robot", Password: "wrong-password"}}, false, isErr(fetch.ErrUnauthorized), "401"},
		{"anonymous", fetch.Source{URL: base + ":2.1.0", Credentials: nil}, false, isErr(fetch.ErrUnauthorized), ""},
		{"other image pinned", fetch.Source{URL: base + ":2.1.0", SHA256: sum(other)}, true, func(err error) bool {
			var dm *fetch.DigestMismatchError
			return errors.As(err, &dm) && dm.Got == sum(img)
		}, "pinned sha256"},
		{"size mismatch", fetch.Source{URL: base + ":2.1.0", ExpectedSize: 5}, true, func(err error) bool {
			var sm *fetch.SizeMismatchError
			return errors.As(err, &sm)
		}, "layer size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.src.Credentials == nil && tc.name != "anonymous" {
				tc.src.Credentials = creds
			}
			if tc.src.ExpectedSize == 0 {
				tc.src.ExpectedSize = -1
			}
			tc.src.OCI.Insecure = true
			before := reg.BlobGets()
			_, err := f.Fetch(t.Context(), tc.src)
			if err == nil {
				t.Fatal("fetch succeeded")
			}
			if !tc.want(err) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %v, not the expected kind (mentioning %q)", err, tc.msg)
			}
			if fetch.IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v", !tc.permanent, tc.permanent)
			}
			if strings.Contains(err.Error(), "registry-pw-1") || strings.Contains(err.Error(), "wrong-password") {
				t.Errorf("error shows a password: %v", err)
			}
			if n := reg.BlobGets() - before; n != 0 {
				t.Errorf("%d blob downloads before the refusal; the manifest alone decides", n)
			}
		})
	}

	small := newFetcher(t, fetch.Options{MaxBytes: 1000})
	before := reg.BlobGets()
	_, err := small.Fetch(t.Context(), fetch.Source{URL: base + ":2.1.0", ExpectedSize: -1, Credentials: creds, OCI: fetch.OCIOptions{Insecure: true}})
	var tooLarge *fetch.TooLargeError
	if !errors.As(err, &tooLarge) || reg.BlobGets() != before {
		t.Errorf("layer over the limit: error %v after %d downloads, want TooLargeError from the manifest", err, reg.BlobGets()-before)
	}
}

func TestOCITokenAndRedirectedBlobs(t *testing.T) {
	img := randomBytes(50_000)
	reg := fetchtest.StartTokenRegistry(t, "registry-access-token")
	reg.Push(t, "fw", "1.0", fetchtest.FirmwareLayer(img))
	var mu sync.Mutex
	var cdnAuth []string
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		cdnAuth = append(cdnAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write(img)
	}))
	t.Cleanup(cdn.Close)
	cdnURL := "http://" + fetchtest.WithHost(strings.TrimPrefix(cdn.URL, "http://"), "cdn.example.com")
	f := newFetcher(t, fetch.Options{Resolver: fetchtest.Loopback("cdn.example.com")})
	src := fetch.Source{URL: "oci://" + reg.Addr + "/fw:1.0", SHA256: sum(img), ExpectedSize: -1, Credentials: &fetch.Credentials{Token: "registry-access-token"}, OCI: fetch.OCIOptions{Insecure: true}}

	got, err := f.Fetch(t.Context(), src)
	if err != nil {
		t.Fatalf("fetch with a registry token: %v", err)
	}
	if !bytes.Equal(readAll(t, got), img) {
		t.Fatal("not the image")
	}

	reg.RedirectBlobs(cdnURL)
	got, err = f.Fetch(t.Context(), src)
	if err != nil {
		t.Fatalf("fetch through a blob redirect: %v", err)
	}
	if !bytes.Equal(readAll(t, got), img) {
		t.Fatal("not the image")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(cdnAuth) != 1 || cdnAuth[0] != "" {
		t.Errorf("the redirect target saw Authorization %q, want one request without credentials", cdnAuth)
	}

	// A blob redirect into a refused address fails the fetch.
	reg.RedirectBlobs("http://169.254.169.254")
	_, err = f.Fetch(t.Context(), src)
	wantForbidden(t, err, egress.RuleMetadata)
}

func isErr(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func TestFetchHonoursCancellation(t *testing.T) {
	reg := fetchtest.StartRegistry(t, "u", "p-password")
	reg.Push(t, "fw", "1", fetchtest.FirmwareLayer([]byte("x")))
	f := newFetcher(t, fetch.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := f.Fetch(ctx, fetch.Source{URL: "oci://" + reg.Addr + "/fw:1", ExpectedSize: -1, Credentials: &fetch.Credentials{Username: "u", Password: "p-password"}, OCI: fetch.OCIOptions{Insecure: true}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}
