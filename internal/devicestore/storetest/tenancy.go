package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"

	"github.com/otaflow/otaflow/internal/devicestore"
)

// BulkEnroller is implemented by stores that import devices in bulk; the
// suite checks bulk-enrolled devices too when the store has it.
type BulkEnroller interface {
	BulkEnroll(ctx context.Context, devs []devicestore.Device) (int, error)
}

// TenantDevice returns a device for tests enrolled through enrollment in
// namespace.
func TenantDevice(id, namespace, enrollment string) devicestore.Device {
	d := NewDevice(id, map[string]string{"tenant": namespace})
	d.Namespace, d.Enrollment = namespace, enrollment
	return d
}

// sameDevice fails unless got is want as stored: every field but the
// times, which other tests cover.
func sameDevice(t testing.TB, what string, got, want devicestore.Device) {
	t.Helper()
	if got.ID != want.ID || got.Type != want.Type || !maps.Equal(got.Labels, want.Labels) || got.KEM != want.KEM ||
		!bytes.Equal(got.PublicKey, want.PublicKey) || !bytes.Equal(got.TokenHash, want.TokenHash) ||
		got.Version != want.Version || got.SecurityFloor != want.SecurityFloor || got.Seq != want.Seq ||
		got.Namespace != want.Namespace || got.Enrollment != want.Enrollment {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func enrolledThrough(t testing.TB, s devicestore.Store, ns, enr string, want int64) {
	t.Helper()
	n, err := s.EnrolledThrough(context.Background(), ns, enr)
	if err != nil || n != want {
		t.Fatalf("EnrolledThrough(%q, %q) = %d, %v; want %d", ns, enr, n, err, want)
	}
}

// readsBack checks every read path returns want: by token (twice, so a
// store with a cache answers once from it), by ID, and DevicesSince.
func readsBack(t testing.TB, s devicestore.Store, want devicestore.Device) {
	t.Helper()
	ctx := context.Background()
	for range 2 {
		got, err := s.DeviceByToken(ctx, want.TokenHash)
		must(t, err)
		sameDevice(t, "by token", got, want)
	}
	got, err := s.Device(ctx, want.ID)
	must(t, err)
	sameDevice(t, "by ID", got, want)
	refs, err := s.DevicesSince(ctx, want.Seq-1, 1)
	must(t, err)
	if len(refs) != 1 || refs[0].ID != want.ID || refs[0].Namespace != want.Namespace || refs[0].Seq != want.Seq ||
		refs[0].Type != want.Type || !maps.Equal(refs[0].Labels, want.Labels) {
		t.Fatalf("DevicesSince(%d): %+v, want %s in %q", want.Seq-1, refs, want.ID, want.Namespace)
	}
}

// testTenancyRoundTrip: Namespace and Enrollment are stored and read back
// by every read path, for devices enrolled one by one and in bulk, and
// every device created counts for its (namespace, enrollment).
func testTenancyRoundTrip(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	devs := []devicestore.Device{
		TenantDevice("t1", "team-a", "factory.line-1"),
		TenantDevice("t2", "team-b", ""),
		TenantDevice("t3", "", ""), // the cluster-wide enrollment Secret
		TenantDevice("t4", "team-a", "factory.line-1"),
	}
	for i, d := range devs {
		got, created, err := s.EnrollWithin(ctx, d, int64(i+10))
		must(t, err)
		if !created || got.Namespace != d.Namespace || got.Enrollment != d.Enrollment {
			t.Fatalf("enrolled %+v created=%v, want namespace %q enrollment %q", got, created, d.Namespace, d.Enrollment)
		}
		devs[i] = got
	}
	for _, d := range devs {
		readsBack(t, s, d)
	}
	enrolledThrough(t, s, "team-a", "factory.line-1", 2)
	enrolledThrough(t, s, "team-b", "", 1)
	enrolledThrough(t, s, "", "", 1)
	enrolledThrough(t, s, "team-a", "", 0)
	enrolledThrough(t, s, "team-b", "factory.line-1", 0)

	bs, ok := s.(BulkEnroller)
	if !ok {
		return
	}
	bulk := []devicestore.Device{
		TenantDevice("b1", "team-a", "factory.line-1"),
		TenantDevice("b2", "team-c", "import"),
		TenantDevice("t2", "team-c", "import"), // known: skipped, never changed
		TenantDevice("b3", "team-a", "factory.line-1"),
		TenantDevice("b4", "", ""),
	}
	bulk[2].TokenHash = hash("bulk-t2")
	n, err := bs.BulkEnroll(ctx, bulk)
	if err != nil || n != 4 {
		t.Fatalf("bulk enroll: %d %v, want 4", n, err)
	}
	enrolledThrough(t, s, "team-a", "factory.line-1", 4)
	enrolledThrough(t, s, "team-c", "import", 1)
	enrolledThrough(t, s, "", "", 2)
	enrolledThrough(t, s, "team-b", "", 1)
	readsBack(t, s, devs[1])
	for _, d := range append(bulk[:2:2], bulk[3:]...) {
		got, err := s.Device(ctx, d.ID)
		must(t, err)
		d.Seq = got.Seq
		readsBack(t, s, d)
	}
	// Quotas see bulk-enrolled devices.
	if _, _, err := s.EnrollWithin(ctx, TenantDevice("t5", "team-a", "factory.line-1"), 4); !errors.Is(err, devicestore.ErrQuotaExceeded) {
		t.Fatalf("fifth device of a quota of 4 after a bulk import: %v", err)
	}
}

// testTenantMismatch: a known device enrolling through a credential of
// another namespace is refused with ErrTenantMismatch and nothing stored
// changes: not its token, labels, version, Seq, tenant or any count.
func testTenantMismatch(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	first, _, err := s.Enroll(ctx, TenantDevice("m1", "team-a", "e1"))
	must(t, err)
	legacy, _, err := s.Enroll(ctx, TenantDevice("m2", "", ""))
	must(t, err)
	counts := map[[2]string]int64{{"team-a", "e1"}: 1, {"", ""}: 1}
	attempts := []struct {
		dev  devicestore.Device
		ns   string
		enr  string
		orig devicestore.Device
	}{
		{first, "team-b", "e1", first},
		{first, "team-b", "", first},
		{first, "", "", first},           // to the cluster-wide Secret
		{legacy, "team-a", "e1", legacy}, // from it
	}
	for _, a := range attempts {
		d := NewDevice(a.dev.ID, map[string]string{"changed": "yes"})
		d.Namespace, d.Enrollment = a.ns, a.enr
		d.TokenHash, d.Version, d.SecurityFloor = hash("other-"+a.dev.ID+a.ns+a.enr), "9.9.9", 7
		for _, quota := range []int64{0, 1, 100} {
			if _, _, err := s.EnrollWithin(ctx, d, quota); !errors.Is(err, devicestore.ErrTenantMismatch) {
				t.Fatalf("%s (namespace %q) enrolling through %q/%q, quota %d: %v, want ErrTenantMismatch", a.dev.ID, a.dev.Namespace, a.ns, a.enr, quota, err)
			}
		}
		if _, err := s.DeviceByToken(ctx, d.TokenHash); !errors.Is(err, devicestore.ErrNotFound) {
			t.Fatalf("a refused enrollment's token resolves: %v", err)
		}
		readsBack(t, s, a.orig)
		enrolledThrough(t, s, a.ns, a.enr, counts[[2]string{a.ns, a.enr}])
	}
	enrolledThrough(t, s, "team-a", "e1", 1)
	if refs, err := s.DevicesSince(ctx, legacy.Seq, 10); err != nil || len(refs) != 0 {
		t.Fatalf("refused enrollments moved devices in Seq: %+v %v", refs, err)
	}
	// Another key is refused as before, whatever the namespace.
	other := TenantDevice("m1", "team-b", "e1")
	other.PublicKey = []byte("another key")
	if _, _, err := s.Enroll(ctx, other); !errors.Is(err, devicestore.ErrKeyMismatch) {
		t.Fatalf("another key from another namespace: %v", err)
	}
}

// testReenrollKeepsEnrollment: re-enrollment through another enrollment
// of the same namespace keeps the first one and counts nowhere; a full
// quota refuses new devices only; a quota of 0 (or below) is no limit.
func testReenrollKeepsEnrollment(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	first, created, err := s.EnrollWithin(ctx, TenantDevice("k1", "team-a", "e1"), 1)
	must(t, err)
	if !created {
		t.Fatal("first enrollment not created")
	}
	again := TenantDevice("k1", "team-a", "e2")
	again.Labels, again.TokenHash, again.Version = map[string]string{"moved": "yes"}, hash("k1-rotated"), "1.2.0"
	got, created, err := s.EnrollWithin(ctx, again, 1)
	must(t, err)
	want := again
	want.Enrollment, want.Seq = "e1", got.Seq
	if created || got.Seq <= first.Seq {
		t.Fatalf("re-enrollment: created=%v seq %d after %d", created, got.Seq, first.Seq)
	}
	sameDevice(t, "re-enrolled through another enrollment", got, want)
	readsBack(t, s, want)
	if _, err := s.DeviceByToken(ctx, first.TokenHash); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("old token after re-enrollment: %v", err)
	}
	enrolledThrough(t, s, "team-a", "e1", 1)
	enrolledThrough(t, s, "team-a", "e2", 0)

	// e1 is full (1 of 1): its device re-enrolls, a new one is refused
	// and leaves nothing behind.
	back := TenantDevice("k1", "team-a", "e1")
	back.TokenHash = hash("k1-back")
	if _, created, err := s.EnrollWithin(ctx, back, 1); err != nil || created {
		t.Fatalf("re-enrollment through a full quota: created=%v %v", created, err)
	}
	newcomer := TenantDevice("k2", "team-a", "e1")
	if _, _, err := s.EnrollWithin(ctx, newcomer, 1); !errors.Is(err, devicestore.ErrQuotaExceeded) {
		t.Fatalf("new device through a full quota: %v", err)
	}
	if _, err := s.Device(ctx, "k2"); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("refused device stored: %v", err)
	}
	if _, err := s.DeviceByToken(ctx, newcomer.TokenHash); !errors.Is(err, devicestore.ErrNotFound) {
		t.Fatalf("refused device's token resolves: %v", err)
	}
	enrolledThrough(t, s, "team-a", "e1", 1)
	// Quotas are per enrollment: e2 still admits one.
	if _, created, err := s.EnrollWithin(ctx, TenantDevice("k3", "team-a", "e2"), 1); err != nil || !created {
		t.Fatalf("new device through another enrollment: created=%v %v", created, err)
	}
	// 0 and negative quotas are no limit.
	for i, quota := range []int64{0, -1} {
		if _, created, err := s.EnrollWithin(ctx, TenantDevice(fmt.Sprint("k-free-", i), "team-a", "e1"), quota); err != nil || !created {
			t.Fatalf("quota %d: created=%v %v", quota, created, err)
		}
	}
	if _, created, err := s.Enroll(ctx, newcomer); err != nil || !created {
		t.Fatalf("Enroll (no quota): created=%v %v", created, err)
	}
	enrolledThrough(t, s, "team-a", "e1", 4)
	// A quota lowered below the count refuses; raised, it admits.
	if _, _, err := s.EnrollWithin(ctx, TenantDevice("k5", "team-a", "e1"), 2); !errors.Is(err, devicestore.ErrQuotaExceeded) {
		t.Fatalf("quota 2 with 4 enrolled: %v", err)
	}
	if _, created, err := s.EnrollWithin(ctx, TenantDevice("k5", "team-a", "e1"), 5); err != nil || !created {
		t.Fatalf("quota 5 with 4 enrolled: created=%v %v", created, err)
	}
	if _, _, err := s.EnrollWithin(ctx, TenantDevice("k6", "team-a", "e1"), 5); !errors.Is(err, devicestore.ErrQuotaExceeded) {
		t.Fatalf("quota 5 with 5 enrolled: %v", err)
	}
	enrolledThrough(t, s, "team-a", "e1", 5)
}

// QuotaRace enrolls n distinct new devices through one enrollment with a
// quota of q < n from as many goroutines, spread over the stores (one
// store, or several on one database as replicas), and checks that exactly
// q were created and n-q refused with ErrQuotaExceeded, that the count is
// q and that exactly the created devices are stored.
func QuotaRace(t *testing.T, stores []devicestore.Store, ns, enr string, n, q int) {
	t.Helper()
	ctx := context.Background()
	var created, refused atomic.Int64
	ok := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		s := stores[i%len(stores)]
		wg.Go(func() {
			_, c, err := s.EnrollWithin(ctx, TenantDevice(fmt.Sprintf("%s-q%03d", ns, i), ns, enr), int64(q))
			switch {
			case errors.Is(err, devicestore.ErrQuotaExceeded):
				refused.Add(1)
			case err != nil:
				t.Errorf("device %d: %v", i, err)
			case !c:
				t.Errorf("device %d: not created", i)
			default:
				ok[i] = true
				created.Add(1)
			}
		})
	}
	wg.Wait()
	if created.Load() != int64(q) || refused.Load() != int64(n-q) {
		t.Fatalf("%d created and %d refused, want %d and %d", created.Load(), refused.Load(), q, n-q)
	}
	for _, s := range stores {
		enrolledThrough(t, s, ns, enr, int64(q))
	}
	s := stores[0]
	for i := range n {
		d := TenantDevice(fmt.Sprintf("%s-q%03d", ns, i), ns, enr)
		got, err := s.DeviceByToken(ctx, d.TokenHash)
		switch {
		case ok[i] && (err != nil || got.Namespace != ns || got.Enrollment != enr):
			t.Fatalf("created device %d: %+v %v", i, got, err)
		case !ok[i] && !errors.Is(err, devicestore.ErrNotFound):
			t.Fatalf("refused device %d: %+v %v", i, got, err)
		}
	}
	refs, err := s.DevicesSince(ctx, 0, -1)
	must(t, err)
	in := 0
	for _, r := range refs {
		if r.Namespace == ns {
			in++
		}
	}
	if in != q {
		t.Fatalf("DevicesSince lists %d devices of %s, want %d", in, ns, q)
	}
	// With the quota full, created devices still re-enroll, concurrently.
	for i := range n {
		if !ok[i] {
			continue
		}
		s := stores[i%len(stores)]
		wg.Go(func() {
			d := TenantDevice(fmt.Sprintf("%s-q%03d", ns, i), ns, enr)
			d.TokenHash = hash(fmt.Sprintf("%s-again-%d", ns, i))
			if _, c, err := s.EnrollWithin(ctx, d, int64(q)); err != nil || c {
				t.Errorf("re-enrolling device %d with the quota full: created=%v %v", i, c, err)
			}
		})
	}
	wg.Wait()
	enrolledThrough(t, s, ns, enr, int64(q))
}

func testQuotaConcurrent(t *testing.T, s devicestore.Store) {
	QuotaRace(t, []devicestore.Store{s}, "team-q", "batch", 40, 13)
}

// testTenantValidation: a namespace or enrollment that is not a
// Kubernetes name is refused before anything is written.
func testTenantValidation(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	for _, c := range []struct{ ns, enr string }{
		{"Team-A", ""}, {"team.a", "e"}, {"", "e"}, {"team-a", "E_1"}, {"team-a", "-e"},
	} {
		d := TenantDevice("v1", c.ns, c.enr)
		if _, _, err := s.EnrollWithin(ctx, d, 5); err == nil || errors.Is(err, devicestore.ErrQuotaExceeded) {
			t.Fatalf("namespace %q enrollment %q: %v, want a validation error", c.ns, c.enr, err)
		}
		if bs, ok := s.(BulkEnroller); ok {
			if _, err := bs.BulkEnroll(ctx, []devicestore.Device{TenantDevice("v2", "team-a", "e"), d}); err == nil {
				t.Fatalf("bulk: namespace %q enrollment %q accepted", c.ns, c.enr)
			}
		}
		enrolledThrough(t, s, c.ns, c.enr, 0)
	}
	if refs, err := s.DevicesSince(ctx, 0, 10); err != nil || len(refs) != 0 {
		t.Fatalf("devices after refusals: %+v %v", refs, err)
	}
	enrolledThrough(t, s, "team-a", "e", 0)
}

// testQuotaModel runs random enrollments (new devices within quotas,
// re-enrollments, enrollments from other namespaces and, where the store
// has it, bulk imports) against a model, checking after every step that
// each device's tenant is the one it first enrolled with (a device never
// changes namespace), that each enrollment's count equals the devices the
// model created through it, and that enrollments alone never exceed a
// quota.
func testQuotaModel(t *testing.T, s devicestore.Store) {
	ctx := context.Background()
	var run atomic.Int64
	bs, canBulk := s.(BulkEnroller)
	type tenant struct{ ns, enr string }
	type mdev struct {
		tenant
		token []byte
	}
	rapid.Check(t, func(rt *rapid.T) {
		pre := fmt.Sprintf("m%d", run.Add(1))
		namespaces := []string{"", pre + "-a", pre + "-b"}
		enrollments := []string{"", "e1", "e2.x"}
		ids := make([]string, 6)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-d%d", pre, i)
		}
		// Quotas per enrollment for the whole sequence (0: none). The
		// cluster-wide pair is shared with other sequences: no quota, and
		// counts relative to where this sequence started.
		quota := map[tenant]int64{}
		count := map[tenant]int64{}
		bulked := map[tenant]bool{}
		base, err := s.EnrolledThrough(ctx, "", "")
		if err != nil {
			rt.Fatal(err)
		}
		count[tenant{}] = base
		var pairs []tenant
		for _, ns := range namespaces[1:] {
			for _, enr := range enrollments {
				p := tenant{ns, enr}
				pairs = append(pairs, p)
				quota[p] = rapid.Int64Range(0, 3).Draw(rt, "quota "+ns+"/"+enr)
			}
		}
		pairs = append(pairs, tenant{})
		model := map[string]mdev{}
		tokens := 0
		newToken := func() []byte { tokens++; return hash(fmt.Sprintf("%s-tok-%d", pre, tokens)) }
		drawTenant := func(rt *rapid.T) tenant {
			ns := rapid.SampledFrom(namespaces).Draw(rt, "namespace")
			if ns == "" {
				return tenant{}
			}
			return tenant{ns, rapid.SampledFrom(enrollments).Draw(rt, "enrollment")}
		}
		checkDevice := func(rt *rapid.T, id string) {
			m, known := model[id]
			got, err := s.Device(ctx, id)
			switch {
			case !known && !errors.Is(err, devicestore.ErrNotFound):
				rt.Fatalf("%s never created: %+v %v", id, got, err)
			case known && err != nil:
				rt.Fatalf("%s: %v", id, err)
			case known && (got.Namespace != m.ns || got.Enrollment != m.enr || !bytes.Equal(got.TokenHash, m.token)):
				rt.Fatalf("%s: tenant %q/%q token %x, want %q/%q %x", id, got.Namespace, got.Enrollment, got.TokenHash[:4], m.ns, m.enr, m.token[:4])
			case known:
				byTok, err := s.DeviceByToken(ctx, m.token)
				if err != nil || byTok.ID != id || byTok.Namespace != m.ns || byTok.Enrollment != m.enr {
					rt.Fatalf("%s by token: %+v %v", id, byTok, err)
				}
			}
		}
		actions := map[string]func(*rapid.T){
			"": func(rt *rapid.T) {
				for _, p := range pairs {
					n, err := s.EnrolledThrough(ctx, p.ns, p.enr)
					if err != nil || n != count[p] {
						rt.Fatalf("EnrolledThrough(%q, %q) = %d %v, want %d", p.ns, p.enr, n, err, count[p])
					}
					if q := quota[p]; q > 0 && !bulked[p] && n > q {
						rt.Fatalf("%q/%q: %d devices, quota %d", p.ns, p.enr, n, q)
					}
				}
			},
			"enroll": func(rt *rapid.T) {
				id := rapid.SampledFrom(ids).Draw(rt, "device")
				p := drawTenant(rt)
				d := TenantDevice(id, p.ns, p.enr)
				d.TokenHash = newToken()
				got, created, err := s.EnrollWithin(ctx, d, quota[p])
				m, known := model[id]
				switch {
				case known && m.ns != p.ns:
					if !errors.Is(err, devicestore.ErrTenantMismatch) {
						rt.Fatalf("%s of %q through %q/%q: %v, want ErrTenantMismatch", id, m.ns, p.ns, p.enr, err)
					}
				case known:
					if err != nil || created || got.Enrollment != m.enr {
						rt.Fatalf("re-enrolling %s of %q/%q through %q: %+v created=%v %v", id, m.ns, m.enr, p.enr, got, created, err)
					}
					m.token = d.TokenHash
					model[id] = m
				case quota[p] > 0 && count[p] >= quota[p]:
					if !errors.Is(err, devicestore.ErrQuotaExceeded) {
						rt.Fatalf("%s through full %q/%q (%d of %d): %v", id, p.ns, p.enr, count[p], quota[p], err)
					}
				default:
					if err != nil || !created {
						rt.Fatalf("new %s through %q/%q: created=%v %v", id, p.ns, p.enr, created, err)
					}
					model[id] = mdev{p, d.TokenHash}
					count[p]++
				}
				checkDevice(rt, id)
			},
		}
		if canBulk {
			actions["bulk"] = func(rt *rapid.T) {
				var devs []devicestore.Device
				var want int
				in := map[string]bool{}
				for range rapid.IntRange(1, 3).Draw(rt, "n") {
					id := rapid.SampledFrom(ids).Draw(rt, "device")
					p := drawTenant(rt)
					d := TenantDevice(id, p.ns, p.enr)
					d.TokenHash = newToken()
					devs = append(devs, d)
					if _, known := model[id]; known || in[id] {
						continue // skipped unchanged
					}
					in[id] = true
					model[id] = mdev{p, d.TokenHash}
					count[p]++
					bulked[p] = true
					want++
				}
				n, err := bs.BulkEnroll(ctx, devs)
				if err != nil || n != want {
					rt.Fatalf("bulk enroll: %d %v, want %d", n, err, want)
				}
				for _, d := range devs {
					checkDevice(rt, d.ID)
				}
			}
		}
		rt.Repeat(actions)
		for _, id := range ids {
			checkDevice(rt, id)
		}
	})
}
