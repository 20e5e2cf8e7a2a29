package catalog

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// keyRig drives a keyLoader by hand: a fake API server that counts GETs and
// can fail them, a settable clock, and the releases a pass sees.
type keyRig struct {
	t       *testing.T
	c       client.Client
	l       *keyLoader
	now     time.Time
	gets    map[string]int
	fail    error
	rels    []otav1.FirmwareRelease
	changes int
}

func newKeyRig(t *testing.T, objs ...client.Object) *keyRig {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	r := &keyRig{t: t, now: time.Unix(1_800_000_000, 0), gets: map[string]int{}}
	r.c = fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			r.gets[key.String()]++
			if r.fail != nil {
				return r.fail
			}
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			t.Error("the key loader listed Secrets: it must only GET them by name")
			return errors.New("list refused")
		},
	}).Build()
	r.l = newKeyLoader(r.c, time.Hour, func() { r.changes++ })
	r.l.now = func() time.Time { return r.now }
	return r
}

func (r *keyRig) pass() {
	r.t.Helper()
	r.l.pass(context.Background(), func(context.Context) ([]otav1.FirmwareRelease, error) { return r.rels, nil })
}

func (r *keyRig) usable(name string) bool {
	r.t.Helper()
	s := Build(nil, r.rels, r.l.secrets())
	for _, rel := range s.byVersion {
		for _, x := range rel {
			if x.Name == name {
				return x.Usable
			}
		}
	}
	r.t.Fatalf("release %s not in the snapshot", name)
	return false
}

func TestKeyLoaderReadsOnlyServableReleasesKeysByName(t *testing.T) {
	r := newKeyRig(t, key("a-key", "uid-a", 32), key("c-key", "uid-c", 32))
	r.rels = []otav1.FirmwareRelease{rel("a", "2.0.0", true), rel("c", "1.0.0", false)}
	select {
	case <-r.l.loaded:
		t.Fatal("loaded before the first pass")
	default:
	}
	r.pass()
	select {
	case <-r.l.loaded:
	default:
		t.Fatal("not loaded after the first pass")
	}
	if r.gets["ns/a-key"] != 1 || r.gets["ns/c-key"] != 0 {
		t.Fatalf("GETs %v: want the Ready release's key only", r.gets)
	}
	if !r.usable("a") || r.usable("c") || r.changes != 1 {
		t.Fatalf("a usable %v, c usable %v, changes %d", r.usable("a"), r.usable("c"), r.changes)
	}
	// Another pass before the TTL: nothing is read again.
	r.now = r.now.Add(30 * time.Minute)
	r.pass()
	if r.gets["ns/a-key"] != 1 || r.changes != 1 {
		t.Fatalf("re-read before the TTL: %v, changes %d", r.gets, r.changes)
	}
	// After the TTL the key is read again (a Secret deleted behind the
	// release's back stops being served).
	if err := r.c.Delete(context.Background(), key("a-key", "uid-a", 32)); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(time.Hour)
	r.pass()
	if r.gets["ns/a-key"] != 2 || r.usable("a") || r.changes != 2 {
		t.Fatalf("after the TTL: %v, usable %v, changes %d", r.gets, r.usable("a"), r.changes)
	}
	// The key comes back: it is retried with a short backoff, not a TTL.
	if err := r.c.Create(context.Background(), key("a-key", "uid-a", 32)); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(keyRetryMin)
	r.pass()
	if !r.usable("a") {
		t.Fatal("key not read again after it reappeared")
	}
	// A release that is gone is forgotten, key included.
	r.rels = nil
	r.pass()
	if len(r.l.secrets()) != 0 {
		t.Fatalf("keys of deleted releases kept: %v", r.l.secrets())
	}
}

func TestKeyLoaderKeepsKeysOnTransientErrors(t *testing.T) {
	r := newKeyRig(t, key("a-key", "uid-a", 32))
	r.rels = []otav1.FirmwareRelease{rel("a", "2.0.0", true)}
	r.pass()
	r.fail = errors.New("connection refused")
	r.now = r.now.Add(2 * time.Hour)
	r.pass()
	if r.gets["ns/a-key"] != 2 || !r.usable("a") {
		t.Fatalf("an API server outage dropped a key: gets %v, usable %v", r.gets, r.usable("a"))
	}
	// Retries back off instead of hammering the API server.
	r.now = r.now.Add(keyRetryMin / 2)
	r.pass()
	if r.gets["ns/a-key"] != 2 {
		t.Fatalf("retried before the backoff: %v", r.gets)
	}
}

func TestKeyLoaderRefusesAnotherReleasesSecret(t *testing.T) {
	// The release was deleted and recreated under the same name; the old
	// key Secret is still there (garbage collection has not run).
	r := newKeyRig(t, key("a-key", "uid-old", 32))
	r.rels = []otav1.FirmwareRelease{rel("a", "2.0.0", true)}
	r.pass()
	if r.usable("a") {
		t.Fatal("served a key Secret labelled with another release's UID")
	}
	if err := r.c.Delete(context.Background(), key("a-key", "", 0)); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Create(context.Background(), key("a-key", "uid-a", 32)); err != nil {
		t.Fatal(err)
	}
	r.now = r.now.Add(keyRetryMax)
	r.pass()
	if !r.usable("a") {
		t.Fatal("the release's own key Secret was not picked up")
	}
}

func TestKeyLoaderKeepsOnlyTheKey(t *testing.T) {
	s := key("a-key", "uid-a", 32)
	s.Data["other"] = []byte("not for the catalog")
	s.Annotations = map[string]string{"a": "b"}
	r := newKeyRig(t, s)
	r.rels = []otav1.FirmwareRelease{rel("a", "2.0.0", true)}
	r.pass()
	got := r.l.secrets()["ns/a-key"]
	if got == nil || len(got.Data) != 1 || len(got.Annotations) != 0 || len(got.Data[otav1.ContentKeyField]) != 32 {
		t.Fatalf("kept %+v", got)
	}
}
