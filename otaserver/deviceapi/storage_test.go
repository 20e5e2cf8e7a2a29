package deviceapi

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	devicesv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

const clusterNS = "otaflow-system"

// seed enrolls n devices of tenant ns, every tenth labelled region=eu,
// the rest region=us; IDs are ns-prefixed and zero-padded.
func seed(t *testing.T, store *sqlite.Store, ns string, n int) {
	t.Helper()
	devs := make([]devicestore.Device, n)
	now := time.Now()
	for i := range devs {
		region := "us"
		if i%10 == 0 {
			region = "eu"
		}
		tenant, enrollment := ns, "factory"
		if tenant == "" {
			tenant, enrollment = "cluster", ""
		}
		devs[i] = devicestore.Device{
			ID: fmt.Sprintf("%s-%05d", tenant, i), Type: "sensor-v1", Labels: map[string]string{"region": region},
			KEM: "x25519", PublicKey: []byte{byte(i)}, TokenHash: tokenHash(tenant, i),
			Version: fmt.Sprintf("1.%d.0", i%3), EnrolledAt: now, LastSeen: now, Namespace: ns, Enrollment: enrollment,
		}
	}
	if _, err := store.BulkEnroll(context.Background(), devs); err != nil {
		t.Fatal(err)
	}
}

func tokenHash(tenant string, i int) []byte {
	h := sha256.Sum256(fmt.Appendf(nil, "%s-%d", tenant, i))
	return h[:]
}

func newStorage(t *testing.T, budget int) (*deviceStorage, *sqlite.Store) {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "devices.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	seed(t, store, "a", 1200)
	seed(t, store, "", 300)
	seed(t, store, clusterNS, 200)
	return &deviceStorage{cfg: &Config{
		Store: store, Catalog: catalog.Static{S: catalog.Build(nil, nil, nil)}, ClusterNamespace: clusterNS,
		Log: logr.Discard(), ScanBudget: budget,
	}}, store
}

func inNS(ns string) context.Context {
	return genericapirequest.WithNamespace(context.Background(), ns)
}

// walk lists every page and returns the names in order, checking the
// limit and that no name comes twice.
func walk(t *testing.T, s *deviceStorage, ns string, opts metainternalversion.ListOptions) []string {
	t.Helper()
	var names []string
	seen := map[string]bool{}
	for pages := 0; ; pages++ {
		obj, err := s.List(inNS(ns), &opts)
		if err != nil {
			t.Fatal(err)
		}
		l := obj.(*devicesv1.DeviceList)
		if opts.Limit > 0 && int64(len(l.Items)) > opts.Limit {
			t.Fatalf("page %d: %d items, limit %d", pages, len(l.Items), opts.Limit)
		}
		for _, d := range l.Items {
			if seen[d.Name] {
				t.Fatalf("%s listed twice", d.Name)
			}
			seen[d.Name] = true
			names = append(names, d.Name)
		}
		if l.Continue == "" {
			return names
		}
		if pages > 10000 {
			t.Fatal("the walk does not end")
		}
		opts.Continue = l.Continue
	}
}

func TestListPages(t *testing.T) {
	s, _ := newStorage(t, 100)
	cases := []struct {
		name   string
		ns     string
		opts   metainternalversion.ListOptions
		want   int
		prefix []string
	}{
		{"a tenant", "a", metainternalversion.ListOptions{Limit: 500}, 1200, []string{"a-"}},
		{"no limit: pages of DefaultLimit", "a", metainternalversion.ListOptions{}, 1200, []string{"a-"}},
		{"the cluster namespace merges the cluster-wide devices", clusterNS, metainternalversion.ListOptions{Limit: 70}, 500, []string{"cluster-", clusterNS}},
		{"all namespaces", "", metainternalversion.ListOptions{Limit: 333}, 1700, nil},
		{"a label selector scans within the budget", "a", metainternalversion.ListOptions{Limit: 7, LabelSelector: labels.SelectorFromSet(labels.Set{"region": "eu"})}, 120, []string{"a-"}},
		{"version, by the store", "a", metainternalversion.ListOptions{Limit: 50, FieldSelector: fields.OneTermEqualSelector(devicesv1.FieldVersion, "1.1.0")}, 400, []string{"a-"}},
		{"version inequality, in memory", "a", metainternalversion.ListOptions{Limit: 50, FieldSelector: fields.OneTermNotEqualSelector(devicesv1.FieldVersion, "1.1.0")}, 800, []string{"a-"}},
		{"an unknown tenant", "nobody", metainternalversion.ListOptions{Limit: 50}, 0, nil},
		{"a rollout that does not exist", "a", metainternalversion.ListOptions{FieldSelector: fields.OneTermEqualSelector(devicesv1.FieldRollout, "nope")}, 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			names := walk(t, s, tc.ns, tc.opts)
			if len(names) != tc.want {
				t.Fatalf("%d devices, want %d", len(names), tc.want)
			}
			if !slices.IsSorted(names) && tc.ns != "" {
				t.Error("not in ID order")
			}
			for _, n := range names {
				ok := tc.prefix == nil
				for _, p := range tc.prefix {
					ok = ok || strings.HasPrefix(n, p)
				}
				if !ok {
					t.Fatalf("%s does not belong to namespace %q", n, tc.ns)
				}
			}
		})
	}
}

// A selective label selector answers short pages instead of scanning the
// whole fleet in one request.
func TestListScanBudget(t *testing.T) {
	s, _ := newStorage(t, 100)
	obj, err := s.List(inNS("a"), &metainternalversion.ListOptions{Limit: 50, LabelSelector: labels.SelectorFromSet(labels.Set{"region": "eu"})})
	if err != nil {
		t.Fatal(err)
	}
	l := obj.(*devicesv1.DeviceList)
	// 10 × limit = 500 devices scanned, every tenth matches.
	if len(l.Items) != 50 || l.Continue == "" {
		t.Fatalf("%d items, continue %q", len(l.Items), l.Continue)
	}
	obj, err = s.List(inNS("a"), &metainternalversion.ListOptions{Limit: 5, LabelSelector: labels.SelectorFromSet(labels.Set{"region": "mars"})})
	if err != nil {
		t.Fatal(err)
	}
	if l := obj.(*devicesv1.DeviceList); len(l.Items) != 0 || l.Continue == "" {
		t.Fatalf("no match in the budget should still continue: %d items, continue %q", len(l.Items), l.Continue)
	}
}

func TestListRefusals(t *testing.T) {
	s, _ := newStorage(t, 0)
	for name, opts := range map[string]metainternalversion.ListOptions{
		"a rollout across namespaces": {FieldSelector: fields.OneTermEqualSelector(devicesv1.FieldRollout, "r")},
		"a bogus continue token":      {Continue: "bm90LWEtdG9rZW4"},
	} {
		if _, err := s.List(inNS(""), &opts); !apierrors.IsBadRequest(err) {
			t.Errorf("%s: %v, want BadRequest", name, err)
		}
	}
	if _, _, err := convertFieldLabel("status.colour", "red"); err == nil {
		t.Error("an unknown field label was accepted")
	}
}

func TestGetAndDelete(t *testing.T) {
	s, store := newStorage(t, 0)
	obj, err := s.Get(inNS(clusterNS), "cluster-00001", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := obj.(*devicesv1.Device); d.Namespace != clusterNS || d.Status.Protocol != devicesv1.ProtocolNative || d.Labels["region"] != "us" {
		t.Errorf("a cluster-wide device: %+v", d)
	}
	if _, err := s.Get(inNS("a"), "cluster-00001", nil); !apierrors.IsNotFound(err) {
		t.Errorf("another tenant's device: %v", err)
	}
	if _, _, err := s.Delete(inNS("a"), "a-00002", nil, &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Device(context.Background(), "a-00002"); err != nil {
		t.Errorf("a dry run deleted the device: %v", err)
	}
	if _, _, err := s.Delete(inNS(clusterNS), "a-00002", nil, nil); !apierrors.IsNotFound(err) {
		t.Errorf("deleting another tenant's device: %v", err)
	}
	if _, done, err := s.Delete(inNS("a"), "a-00002", nil, nil); err != nil || !done {
		t.Fatalf("delete: %v %v", done, err)
	}
	if _, err := store.Device(context.Background(), "a-00002"); err == nil {
		t.Error("the device is still stored")
	}
	if _, err := s.Get(inNS("a"), "a-00002", nil); !apierrors.IsNotFound(err) {
		t.Errorf("a deleted device: %v", err)
	}
	if names := walk(t, s, "a", metainternalversion.ListOptions{Limit: 500}); len(names) != 1199 {
		t.Errorf("%d devices after a delete", len(names))
	}
}

func TestTable(t *testing.T) {
	s, _ := newStorage(t, 0)
	obj, err := s.List(inNS("a"), &metainternalversion.ListOptions{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	tab, err := s.ConvertToTable(context.Background(), obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Rows) != 3 || len(tab.Rows[0].Cells) != len(tab.ColumnDefinitions) || tab.Continue == "" {
		t.Fatalf("table: %d rows, %d cells for %d columns, continue %q", len(tab.Rows), len(tab.Rows[0].Cells), len(tab.ColumnDefinitions), tab.Continue)
	}
	if c := tab.Rows[0].Cells; c[0] != "a-00000" || c[2] != "1.0.0" || c[4] != "<none>" {
		t.Errorf("first row: %v", c)
	}
}

func FuzzDecodeContinue(f *testing.F) {
	f.Add(encodeContinue("a-00001"))
	f.Add("")
	f.Add("eyJ2IjoyLCJhZnRlciI6IngifQ")
	f.Fuzz(func(t *testing.T, s string) {
		after, err := decodeContinue(s)
		if err != nil {
			return
		}
		if after == "" {
			t.Fatal("an empty position was accepted")
		}
		if again, err := decodeContinue(encodeContinue(after)); err != nil || again != after {
			t.Fatalf("round trip of %q: %q %v", after, again, err)
		}
	})
}

// A fleet that fills its last page exactly ends there: no empty page after.
func TestListEndsOnAFullPage(t *testing.T) {
	s, _ := newStorage(t, 0)
	obj, err := s.List(inNS("a"), &metainternalversion.ListOptions{Limit: 600})
	if err != nil {
		t.Fatal(err)
	}
	l := obj.(*devicesv1.DeviceList)
	obj, err = s.List(inNS("a"), &metainternalversion.ListOptions{Limit: 600, Continue: l.Continue})
	if err != nil {
		t.Fatal(err)
	}
	if l2 := obj.(*devicesv1.DeviceList); len(l.Items) != 600 || len(l2.Items) != 600 || l2.Continue != "" {
		t.Errorf("pages of %d and %d devices, then continue %q; want 600, 600 and the end", len(l.Items), len(l2.Items), l2.Continue)
	}
}
