package otaserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/devicetest"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// leakedToken is a tenant's bootstrap token that an attacker has.
const leakedToken = "tenant-token-leaked-0123456789abcdef0123456789"

func tenantCredentials(t *testing.T, quota int64) *otaserver.CredentialSet {
	t.Helper()
	e := otav1.DeviceEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "factory"},
		Spec: otav1.DeviceEnrollmentSpec{TokenSecretRef: otav1.TokenSecretReference{Name: "s"}, MaxDevices: ptr.To(quota)}}
	m, problems := otaserver.CompileCredentials([]otav1.DeviceEnrollment{e}, [][]byte{[]byte(leakedToken)})
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	set := otaserver.NewCredentialSet()
	set.Replace(m)
	return set
}

// TestEnrollmentFlood: an attacker floods enrollment with a leaked token of
// a DeviceEnrollment whose quota is Q. At most Q devices enroll, the
// server's device index holds no more than Q of them, and legitimate
// devices keep checking in meanwhile (their p99 is logged).
func TestEnrollmentFlood(t *testing.T) {
	const quota, attempts, workers = 200, 3000, 16
	h := newHarnessWith(t, 1000, harnessOptions{creds: tenantCredentials(t, quota)})
	ctx := context.Background()
	var legit []*devicetest.Device
	for i := range 8 {
		legit = append(legit, h.device(fmt.Sprintf("legit-%d", i), true))
	}
	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)

	var created, quotaRefused, other atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > attempts {
					return
				}
				d, err := devicetest.New(h.srv.URL, fmt.Sprintf("flood-%d", i), "sensor-v1", "1.0.0", map[string]string{"region": "eu"})
				if err != nil {
					t.Error(err)
					return
				}
				r, err := d.Enroll(ctx, leakedToken)
				switch {
				case err != nil:
					t.Error(err)
					return
				case r.Status == http.StatusCreated:
					created.Add(1)
				case r.Status == http.StatusForbidden && strings.Contains(string(r.Body), protov1.CodeEnrollmentQuota):
					quotaRefused.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	// Legitimate devices poll throughout the flood.
	var lat []time.Duration
	var lmu sync.Mutex
	var pollers sync.WaitGroup
	for _, d := range legit {
		pollers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				r, _, err := d.Check(ctx, "")
				if err != nil || (r.Status != 200 && r.Status != 204) {
					t.Errorf("%s check-in during the flood: %v %d %s", d.ID, err, r.Status, r.Body)
					return
				}
				lmu.Lock()
				lat = append(lat, time.Since(start))
				lmu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	pollers.Wait()

	if created.Load() != quota || quotaRefused.Load() != attempts-quota || other.Load() != 0 {
		t.Fatalf("flood: %d created, %d refused by the quota, %d other; want %d, %d, 0", created.Load(), quotaRefused.Load(), other.Load(), quota, attempts-quota)
	}
	if n, err := h.store.EnrolledThrough(ctx, "ns", "factory"); err != nil || n != quota {
		t.Fatalf("EnrolledThrough = %d, %v; want %d", n, err, quota)
	}
	// The store (and so its in-memory index) holds the legitimate devices
	// and Q flood devices, nothing more.
	refs, err := h.store.DevicesSince(ctx, 0, 10*attempts)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != len(legit)+quota {
		t.Fatalf("%d devices stored, want %d", len(refs), len(legit)+quota)
	}
	var ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	slices.Sort(lat)
	if len(lat) == 0 {
		t.Fatal("no legitimate check-in during the flood")
	}
	p99 := lat[len(lat)*99/100]
	t.Logf("flood of %d enrollments (quota %d): %d created; heap %d KiB -> %d KiB; %d legitimate check-ins meanwhile, p50 %v, p99 %v",
		attempts, quota, created.Load(), ms0.HeapAlloc>>10, ms1.HeapAlloc>>10, len(lat), lat[len(lat)/2], p99)
}

// TestEnrollFailuresThrottledPerAddress: after the burst of unknown tokens
// from one address, that address is answered 429 with Retry-After — even
// with a valid token — before its body is read, while another address still
// enrolls; the budget refills with time.
func TestEnrollFailuresThrottledPerAddress(t *testing.T) {
	h := newHarnessWith(t, 1000, harnessOptions{})
	post := func(addr, tok, id string) *httptest.ResponseRecorder {
		d, err := devicetest.New("http://unused", id, "sensor-v1", "1.0.0", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(d.EnrollRequest(tok))
		req := httptest.NewRequest(http.MethodPost, protov1.PathEnroll, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		h.handler.ServeHTTP(rec, req)
		return rec
	}
	const attacker, attackerV6, neighbour = "203.0.113.7:4000", "[2001:db8:1:2::7]:4000", "198.51.100.9:5000"
	for i := range 10 {
		if r := post(attacker, "guess-"+fmt.Sprint(i), "x"); r.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, r.Code)
		}
	}
	r := post(attacker, bootstrap, "dev-after-guessing")
	if r.Code != http.StatusTooManyRequests || r.Header().Get("Retry-After") == "" {
		t.Fatalf("11th attempt from the address: %d (Retry-After %q), want 429", r.Code, r.Header().Get("Retry-After"))
	}
	if r := post(neighbour, bootstrap, "dev-neighbour"); r.Code != http.StatusCreated {
		t.Fatalf("another address: %d %s", r.Code, r.Body)
	}
	// IPv6 clients are counted by /64: another address of the same /64
	// shares the budget.
	for i := range 10 {
		post(attackerV6, "guess-"+fmt.Sprint(i), "x")
	}
	if r := post("[2001:db8:1:2::8]:4000", bootstrap, "dev-v6"); r.Code != http.StatusTooManyRequests {
		t.Fatalf("same /64: %d, want 429", r.Code)
	}
	h.advance(time.Minute)
	if r := post(attacker, bootstrap, "dev-later"); r.Code != http.StatusCreated {
		t.Fatalf("after a minute: %d %s", r.Code, r.Body)
	}
}
