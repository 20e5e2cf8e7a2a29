package devindex

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/otaflow/otaflow/internal/devicestore"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func tokenHash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func dev(id string, labels map[string]string) devicestore.Device {
	return devicestore.Device{
		ID: id, Type: "sensor", Labels: labels, KEM: "x25519", PublicKey: []byte("pk-" + id),
		TokenHash: tokenHash("tok-" + id), Version: "1.0.0", SecurityFloor: 3,
		EnrolledAt: t0, LastSeen: t0.Add(time.Second), Seq: 7,
		Namespace: "fleet-a", Enrollment: "factory.line-1",
	}
}

// variants are the index configurations every behaviour must hold in:
// normal hashing, every key colliding in its 64-bit hash (overflow maps),
// and every label set stored per device (no shared profiles).
func variants() map[string]func() *Index {
	return map[string]func() *Index{
		"plain": New,
		"colliding": func() *Index {
			x := New()
			x.idHash = func(string) uint64 { return 42 }
			x.tokenKey = func([32]byte) uint64 { return 42 }
			return x
		},
		"unshared labels": func() *Index {
			x := New()
			x.maxProfs = 0
			return x
		},
	}
}

func equalDevice(t *testing.T, got, want devicestore.Device) {
	t.Helper()
	if got.ID != want.ID || got.Type != want.Type || got.KEM != want.KEM || string(got.PublicKey) != string(want.PublicKey) ||
		string(got.TokenHash) != string(want.TokenHash) || got.Version != want.Version || got.SecurityFloor != want.SecurityFloor ||
		!got.EnrolledAt.Equal(want.EnrolledAt) || !got.LastSeen.Equal(want.LastSeen) || got.Seq != want.Seq ||
		got.Namespace != want.Namespace || got.Enrollment != want.Enrollment ||
		!maps.Equal(got.Labels, want.Labels) && !(len(got.Labels) == 0 && len(want.Labels) == 0) {
		t.Fatalf("device\n got %+v\nwant %+v", got, want)
	}
}

func TestIndex(t *testing.T) {
	for name, mk := range variants() {
		t.Run(name, func(t *testing.T) {
			x := mk()
			devs := []devicestore.Device{
				dev("a", map[string]string{"region": "eu"}),
				dev("b", map[string]string{"region": "eu"}),
				dev("c", nil),
			}
			devs[1].Enrollment = ""
			devs[2].Namespace, devs[2].Enrollment = "", "" // the cluster-wide enrollment Secret
			for _, d := range devs {
				if err := x.Put(d); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range devs {
				got, ok, err := x.ByToken(d.TokenHash)
				if err != nil || !ok {
					t.Fatalf("ByToken(%s): %v %v", d.ID, ok, err)
				}
				equalDevice(t, got, d)
				got, ok, err = x.ByID(d.ID)
				if err != nil || !ok {
					t.Fatalf("ByID(%s): %v %v", d.ID, ok, err)
				}
				equalDevice(t, got, d)
			}
			for _, miss := range [][]byte{tokenHash("nobody"), nil, []byte("short")} {
				if _, ok, _ := x.ByToken(miss); ok {
					t.Fatalf("ByToken(%x) found a device", miss)
				}
			}
			if _, ok, _ := x.ByID("zzz"); ok {
				t.Fatal("ByID(zzz) found a device")
			}

			// Re-enrollment: the new token resolves, the old one does not,
			// labels and version follow.
			again := dev("a", map[string]string{"region": "us"})
			again.TokenHash, again.Version, again.Seq = tokenHash("rotated"), "1.1.0", 9
			if err := x.Put(again); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := x.ByToken(devs[0].TokenHash); ok {
				t.Fatal("old token still resolves after re-enrollment")
			}
			got, ok, _ := x.ByToken(again.TokenHash)
			if !ok {
				t.Fatal("new token does not resolve")
			}
			equalDevice(t, got, again)
			if got, _, _ := x.ByToken(devs[1].TokenHash); got.ID != "b" {
				t.Fatalf("another device's token resolves to %q", got.ID)
			}

			// Another key for a known ID is refused and changes nothing.
			other := dev("a", nil)
			other.PublicKey = []byte("other key")
			if err := x.Put(other); err == nil {
				t.Fatal("Put with another public key succeeded")
			}
			got, _, _ = x.ByID("a")
			equalDevice(t, got, again)

			// Add never overwrites an indexed device.
			stale := dev("a", nil)
			if err := x.Add(stale); err != nil {
				t.Fatal(err)
			}
			if got, _, _ := x.ByID("a"); got.Version != again.Version || string(got.TokenHash) != string(again.TokenHash) {
				t.Fatalf("Add overwrote device a: %+v", got)
			}
			if !x.SetRunning("b", "2.0.0", 5, t0.Add(time.Hour)) {
				t.Fatal("SetRunning(b) found no device")
			}
			x.Touch(map[string]time.Time{"b": t0, "c": t0.Add(2 * time.Hour), "nobody": t0})
			got, _, _ = x.ByID("b")
			if got.Version != "2.0.0" || got.SecurityFloor != 5 || !got.LastSeen.Equal(t0.Add(time.Hour)) {
				t.Fatalf("after SetRunning and an older Touch: %+v", got)
			}
			got, _, _ = x.ByID("c")
			if !got.LastSeen.Equal(t0.Add(2 * time.Hour)) {
				t.Fatalf("Touch(c): last seen %v", got.LastSeen)
			}
			if x.SetRunning("nobody", "1", 0, t0) {
				t.Fatal("SetRunning of an unknown device reported success")
			}

			if !x.Known("b") || x.Known("nobody") {
				t.Fatal("Known is wrong")
			}
			if x.MayHaveRecords("b") {
				t.Fatal("fresh device may have records")
			}
			x.MarkRecords("b")
			x.MarkRecords("nobody")
			if !x.MayHaveRecords("b") || x.MayHaveRecords("c") || !x.MayHaveRecords("nobody") {
				t.Fatal("MarkRecords marked the wrong devices")
			}
			if st := x.Stats(); st.Devices != 3 || st.Bytes <= 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestPutRefusesBadDevices(t *testing.T) {
	x := New()
	d := dev("a", nil)
	d.TokenHash = []byte("not 32 bytes")
	if err := x.Put(d); err == nil {
		t.Fatal("Put accepted a short token hash")
	}
	d = dev("a", nil)
	d.PublicKey = make([]byte, maxItem)
	if err := x.Put(d); err == nil {
		t.Fatal("Put accepted an oversized key")
	}
	if st := x.Stats(); st.Devices != 0 {
		t.Fatalf("refused devices were indexed: %+v", st)
	}
}

func TestPutRefusesBadTenants(t *testing.T) {
	long := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a'
		}
		return string(b)
	}
	for _, c := range []struct{ ns, enr string }{
		{"Upper", ""},
		{"a.b", ""}, // a namespace is a label, not a subdomain
		{"-a", "e"},
		{long(64), ""},
		{"", "e"}, // an enrollment belongs to a namespace
		{"ns", "Bad_Name"},
		{"ns", "a..b"},
		{"ns", long(254)},
		{"ns\x00x", "e"},
	} {
		d := dev("a", nil)
		d.Namespace, d.Enrollment = c.ns, c.enr
		if err := Check(d); err == nil {
			t.Errorf("Check accepted namespace %q enrollment %q", c.ns, c.enr)
		}
		if err := New().Put(d); err == nil {
			t.Errorf("Put accepted namespace %q enrollment %q", c.ns, c.enr)
		}
	}
	for _, c := range []struct{ ns, enr string }{
		{"", ""}, {"ns", ""}, {long(63), long(253)}, {"a-1", "x.y-2.z"},
	} {
		d := dev("a", nil)
		d.Namespace, d.Enrollment = c.ns, c.enr
		if err := Check(d); err != nil {
			t.Errorf("Check refused namespace %q enrollment %q: %v", c.ns, c.enr, err)
		}
	}
}

// TestTenantsAreShared: devices of one enrollment share its interned
// names, so tenancy costs no memory per device.
func TestTenantsAreShared(t *testing.T) {
	x := New()
	for i := range 1000 {
		d := dev(fmt.Sprint(i), nil)
		d.Namespace, d.Enrollment = []string{"ns-a", "ns-b"}[i%2], []string{"e1", "e2", ""}[i%3]
		if err := x.Put(d); err != nil {
			t.Fatal(err)
		}
	}
	if st := x.Stats(); st.Tenants != 6 {
		t.Fatalf("%d tenants for 6 distinct (namespace, enrollment) pairs", st.Tenants)
	}
	for _, id := range []string{"0", "7", "999"} {
		d, _, _ := x.ByID(id)
		var i int
		fmt.Sscan(id, &i)
		if d.Namespace != []string{"ns-a", "ns-b"}[i%2] || d.Enrollment != []string{"e1", "e2", ""}[i%3] {
			t.Fatalf("device %s: namespace %q enrollment %q", id, d.Namespace, d.Enrollment)
		}
	}
	a, _, _ := x.ByID("0")
	b, _, _ := x.ByID("6")
	if unsafe.StringData(a.Namespace) != unsafe.StringData(b.Namespace) {
		t.Fatal("equal namespaces are not shared")
	}
}

func TestLabelSetsAreShared(t *testing.T) {
	x := New()
	for i := range 1000 {
		if err := x.Put(dev(fmt.Sprint(i), map[string]string{"region": []string{"eu", "us"}[i%2]})); err != nil {
			t.Fatal(err)
		}
	}
	if st := x.Stats(); st.Profiles != 2 {
		t.Fatalf("%d label sets for 2 distinct ones", st.Profiles)
	}
	a, _, _ := x.ByID("0")
	b, _, _ := x.ByID("2")
	if fmt.Sprintf("%p", a.Labels) != fmt.Sprintf("%p", b.Labels) {
		t.Fatal("equal label sets are not shared")
	}
}

// The entry layout is what makes a million devices fit; keep it small
// and free of pointers.
func TestEntryLayout(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n > 96 {
		t.Fatalf("entry is %d bytes, want at most 96", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	x := New()
	const n = 200
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range n {
				id := fmt.Sprintf("w%d-%d", w, i)
				if err := x.Put(dev(id, map[string]string{"w": fmt.Sprint(w)})); err != nil {
					t.Error(err)
					return
				}
				x.SetRunning(id, "2.0.0", 4, t0)
				x.MarkRecords(id)
			}
		})
		wg.Go(func() {
			for i := range n {
				id := fmt.Sprintf("w%d-%d", w, i)
				if d, ok, err := x.ByToken(tokenHash("tok-" + id)); err != nil || ok && d.ID != id {
					t.Errorf("ByToken(%s) = %q, %v", id, d.ID, err)
					return
				}
				x.MayHaveRecords(id)
			}
		})
	}
	wg.Wait()
	if st := x.Stats(); st.Devices != 4*n {
		t.Fatalf("%d devices, want %d", st.Devices, 4*n)
	}
	for w := range 4 {
		for i := range n {
			id := fmt.Sprintf("w%d-%d", w, i)
			d, ok, _ := x.ByToken(tokenHash("tok-" + id))
			if !ok || d.ID != id || d.Version != "2.0.0" || !x.MayHaveRecords(id) {
				t.Fatalf("%s after concurrent writes: %+v ok=%v", id, d, ok)
			}
		}
	}
}

func BenchmarkByToken(b *testing.B) {
	x := New()
	const n = 100000
	toks := make([][]byte, n)
	for i := range n {
		d := dev(fmt.Sprint(i), map[string]string{"region": "eu"})
		toks[i] = d.TokenHash
		if err := x.Put(d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok, _ := x.ByToken(toks[i%n]); !ok {
			b.Fatal("miss")
		}
	}
}

// TestDelete: a deleted device resolves neither by ID nor by token, the
// others (sharing its hash buckets in the colliding variant) still do,
// and its slot is reused clean: no token, no records mark.
func TestDelete(t *testing.T) {
	for name, mk := range variants() {
		t.Run(name, func(t *testing.T) {
			x := mk()
			devs := []devicestore.Device{dev("a", nil), dev("b", map[string]string{"k": "v"}), dev("c", nil)}
			for _, d := range devs {
				if err := x.Put(d); err != nil {
					t.Fatal(err)
				}
			}
			x.MarkRecords("a")
			found := func(d devicestore.Device, want bool) {
				t.Helper()
				byID, ok, err := x.ByID(d.ID)
				if err != nil || ok != want {
					t.Fatalf("ByID(%s): %v %v, want found=%v", d.ID, ok, err, want)
				}
				byTok, ok, err := x.ByToken(d.TokenHash)
				if err != nil || ok != want {
					t.Fatalf("ByToken(%s): %v %v, want found=%v", d.ID, ok, err, want)
				}
				if want {
					equalDevice(t, byID, d)
					equalDevice(t, byTok, d)
				}
				if _, ok := x.SeenAt(d.ID); ok != want {
					t.Fatalf("SeenAt(%s) found=%v, want %v", d.ID, ok, want)
				}
			}
			// The first device put holds the shared buckets when keys collide.
			for _, del := range []string{"a", "c"} {
				if !x.Delete(del) {
					t.Fatalf("Delete(%s) found nothing", del)
				}
				if x.Delete(del) {
					t.Fatalf("second Delete(%s) found it", del)
				}
			}
			found(devs[0], false)
			found(devs[1], true)
			found(devs[2], false)
			if st := x.Stats(); st.Devices != 1 {
				t.Fatalf("%d devices indexed, want 1", st.Devices)
			}
			// Deleted devices are untracked again: they may have records.
			if !x.MayHaveRecords("a") {
				t.Fatal("a deleted device is known to have no record")
			}
			// New devices take the freed slots, with nothing of the old ones.
			d, again := dev("d", nil), dev("a", map[string]string{"new": "yes"})
			again.TokenHash = tokenHash("a-again")
			for _, n := range []devicestore.Device{d, again} {
				if err := x.Put(n); err != nil {
					t.Fatal(err)
				}
				if x.MayHaveRecords(n.ID) {
					t.Fatalf("%s in a reused slot has a records mark", n.ID)
				}
			}
			found(d, true)
			found(again, true)
			found(devs[1], true)
			if _, ok, _ := x.ByToken(devs[0].TokenHash); ok {
				t.Fatal("the deleted device's old token resolves after its ID came back")
			}
			if st := x.Stats(); st.Devices != 3 {
				t.Fatalf("%d devices indexed, want 3", st.Devices)
			}
			x.Touch(map[string]time.Time{"c": t0.Add(time.Hour)}) // deleted: ignored
			if x.SetRunning("c", "9", 9, t0) {
				t.Fatal("SetRunning found a deleted device")
			}
			found(devs[2], false)
		})
	}
}
