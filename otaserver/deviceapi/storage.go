package deviceapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	devicesv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/catalog"
)

// Page sizes. A list without a limit gets DefaultLimit items and a continue
// token, so no request makes the server hold the whole fleet.
const (
	DefaultLimit = 500
	MaxLimit     = 5000
	// DefaultScanBudget is the fewest devices a filtered page examines
	// before it answers with what it found (fewer than the limit, and a
	// continue token): a selective label selector over a million devices
	// answers in bounded time and memory, page by page.
	DefaultScanBudget = 10000
)

var groupResource = devicesv1.SchemeGroupVersion.WithResource(devicesv1.ResourceDevices).GroupResource()

// deviceStorage serves devices: get, list, delete, tables.
type deviceStorage struct {
	cfg *Config
}

var (
	_ rest.Storage              = (*deviceStorage)(nil)
	_ rest.Scoper               = (*deviceStorage)(nil)
	_ rest.Getter               = (*deviceStorage)(nil)
	_ rest.Lister               = (*deviceStorage)(nil)
	_ rest.GracefulDeleter      = (*deviceStorage)(nil)
	_ rest.SingularNameProvider = (*deviceStorage)(nil)
)

func (s *deviceStorage) New() runtime.Object     { return &devicesv1.Device{} }
func (s *deviceStorage) NewList() runtime.Object { return &devicesv1.DeviceList{} }
func (s *deviceStorage) Destroy()                {}
func (s *deviceStorage) NamespaceScoped() bool   { return true }
func (s *deviceStorage) GetSingularName() string { return "device" }

// shownNamespace is the namespace a device of the store's tenant storeNS
// is shown in: the cluster-wide devices (tenant "") in the cluster
// namespace, besides that namespace's own.
func (s *deviceStorage) shownNamespace(storeNS string) string {
	if storeNS == "" {
		return s.cfg.ClusterNamespace
	}
	return storeNS
}

// lookup reads a device of the request's namespace.
func (s *deviceStorage) lookup(ctx context.Context, name string) (devicestore.Device, error) {
	ns := genericapirequest.NamespaceValue(ctx)
	d, err := s.cfg.Store.Device(ctx, name)
	switch {
	case errors.Is(err, devicestore.ErrNotFound):
		return d, apierrors.NewNotFound(groupResource, name)
	case err != nil:
		return d, storeError(err)
	case s.shownNamespace(d.Namespace) != ns:
		// Another tenant's device does not exist here.
		return d, apierrors.NewNotFound(groupResource, name)
	}
	return d, nil
}

func (s *deviceStorage) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	d, err := s.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	recs, err := s.cfg.Store.Records(ctx, d.ID)
	if err != nil {
		return nil, storeError(err)
	}
	out := toDevice(d, recs, s.cfg.Catalog.Snapshot(), s.shownNamespace(d.Namespace))
	return &out, nil
}

// Delete decommissions the device: it leaves the store, every fleet and
// every count, and its token stops working.
func (s *deviceStorage) Delete(ctx context.Context, name string, validate rest.ValidateObjectFunc, opts *metav1.DeleteOptions) (runtime.Object, bool, error) {
	obj, err := s.Get(ctx, name, nil)
	if err != nil {
		return nil, false, err
	}
	if opts != nil && opts.Preconditions != nil && opts.Preconditions.UID != nil && *opts.Preconditions.UID != "" {
		return nil, false, apierrors.NewConflict(groupResource, name, errors.New("devices have no UID precondition"))
	}
	if validate != nil {
		if err := validate(ctx, obj); err != nil {
			return nil, false, err
		}
	}
	if opts != nil && len(opts.DryRun) > 0 {
		return obj, true, nil
	}
	if err := s.cfg.Store.DeleteDevice(ctx, name); err != nil {
		if errors.Is(err, devicestore.ErrNotFound) {
			return nil, false, apierrors.NewNotFound(groupResource, name)
		}
		return nil, false, storeError(err)
	}
	user := ""
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		user = u.GetName()
	}
	s.cfg.Log.Info("device decommissioned", "device", name, "namespace", genericapirequest.NamespaceValue(ctx), "user", user)
	return obj, true, nil
}

// query is a parsed list request.
type query struct {
	namespaces []string // store tenants; nil with all
	all        bool
	filter     devicestore.DeviceFilter
	name       string // metadata.name=
	labels     labels.Selector
	inMemory   []fields.Requirement // applied to the converted object
	limit      int
	after      string
	impossible bool // a filter no device can pass (e.g. an unknown rollout)
}

func (s *deviceStorage) List(ctx context.Context, opts *metainternalversion.ListOptions) (runtime.Object, error) {
	q, err := s.parse(ctx, opts)
	if err != nil {
		return nil, err
	}
	list := &devicesv1.DeviceList{TypeMeta: metav1.TypeMeta{APIVersion: devicesv1.SchemeGroupVersion.String(), Kind: "DeviceList"}}
	if q.impossible {
		return list, nil
	}
	if q.name != "" {
		obj, err := s.Get(ctx, q.name, nil)
		if apierrors.IsNotFound(err) {
			return list, nil
		}
		if err != nil {
			return nil, err
		}
		if d := obj.(*devicesv1.Device); q.matches(d) {
			list.Items = append(list.Items, *d)
		}
		return list, nil
	}
	snap := s.cfg.Catalog.Snapshot()
	after, scanned := q.after, 0
	for {
		// One device more than the page: whether the walk goes on.
		page, err := s.page(ctx, q, after, q.limit+1)
		if err != nil {
			return nil, err
		}
		more := len(page) > q.limit
		page = page[:min(len(page), q.limit)]
		ids := make([]string, len(page))
		for i, d := range page {
			ids[i] = d.ID
		}
		var recs map[string][]devicestore.Record
		if len(ids) > 0 {
			if recs, err = s.cfg.Store.RecordsOf(ctx, ids); err != nil {
				return nil, storeError(err)
			}
		}
		for i, d := range page {
			after = d.ID
			scanned++
			if !q.labels.Matches(labels.Set(d.Labels)) {
				continue
			}
			dev := toDevice(d, recs[d.ID], snap, s.shownNamespace(d.Namespace))
			if !q.matches(&dev) {
				continue
			}
			list.Items = append(list.Items, dev)
			if len(list.Items) == q.limit {
				if i < len(page)-1 || more {
					list.Continue = encodeContinue(after)
				}
				return list, nil
			}
		}
		if !more {
			return list, nil // the walk reached the end
		}
		if scanned >= max(s.cfg.scanBudget(), 10*q.limit) {
			// A selective filter: answer what was found so far.
			list.Continue = encodeContinue(after)
			return list, nil
		}
	}
}

// page reads the next devices after the given ID from every tenant the
// query covers, merged by ID (two tenants in the cluster namespace).
func (s *deviceStorage) page(ctx context.Context, q query, after string, limit int) ([]devicestore.Device, error) {
	if q.all {
		f := q.filter
		f.AllNamespaces = true
		devs, err := s.cfg.Store.ListDevices(ctx, f, after, limit)
		return devs, storeError(err)
	}
	var out []devicestore.Device
	for _, ns := range q.namespaces {
		f := q.filter
		f.Namespace = ns
		devs, err := s.cfg.Store.ListDevices(ctx, f, after, limit)
		if err != nil {
			return nil, storeError(err)
		}
		out = append(out, devs...)
	}
	if len(q.namespaces) > 1 {
		slices.SortFunc(out, func(a, b devicestore.Device) int { return strings.Compare(a.ID, b.ID) })
		if len(out) > limit {
			out = out[:limit]
		}
	}
	return out, nil
}

// matches applies the requirements the store does not (inequalities) to
// a converted device. status.rollout and status.state are the values of
// all the device's records: "=" means any record has the value, "!="
// that none has.
func (q query) matches(d *devicesv1.Device) bool {
	for _, r := range q.inMemory {
		var vals []string
		switch r.Field {
		case "metadata.name":
			vals = []string{d.Name}
		case "metadata.namespace":
			vals = []string{d.Namespace}
		case devicesv1.FieldVersion:
			vals = []string{d.Status.Version}
		case devicesv1.FieldType:
			vals = []string{d.Status.Type}
		case devicesv1.FieldRollout, devicesv1.FieldState:
			for _, rec := range d.Status.Rollouts {
				if r.Field == devicesv1.FieldRollout {
					vals = append(vals, rec.Rollout)
				} else {
					vals = append(vals, rec.State)
				}
			}
		}
		has := slices.Contains(vals, r.Value)
		if has != (r.Operator != selection.NotEquals) {
			return false
		}
	}
	return true
}

func (s *deviceStorage) parse(ctx context.Context, opts *metainternalversion.ListOptions) (query, error) {
	q := query{labels: labels.Everything(), limit: DefaultLimit}
	ns := genericapirequest.NamespaceValue(ctx)
	switch {
	case ns == metav1.NamespaceAll:
		q.all = true
	case ns == s.cfg.ClusterNamespace:
		q.namespaces = []string{ns, ""}
	default:
		q.namespaces = []string{ns}
	}
	if opts == nil {
		return q, nil
	}
	if opts.LabelSelector != nil {
		q.labels = opts.LabelSelector
	}
	if opts.Limit > 0 {
		q.limit = int(min(opts.Limit, MaxLimit))
	}
	if opts.Continue != "" {
		after, err := decodeContinue(opts.Continue)
		if err != nil {
			return q, apierrors.NewBadRequest(err.Error())
		}
		q.after = after
	}
	if opts.FieldSelector == nil || opts.FieldSelector.Empty() {
		return q, nil
	}
	var rolloutName string
	for _, r := range opts.FieldSelector.Requirements() {
		if r.Operator == selection.NotEquals {
			q.inMemory = append(q.inMemory, r)
			continue
		}
		switch r.Field {
		case "metadata.name":
			q.name = r.Value
		case "metadata.namespace":
			q.inMemory = append(q.inMemory, r)
		case devicesv1.FieldVersion:
			q.filter.Version = r.Value
		case devicesv1.FieldType:
			q.filter.Type = r.Value
		case devicesv1.FieldState:
			q.filter.State = rollout.State(r.Value)
		case devicesv1.FieldRollout:
			rolloutName = r.Value
		default:
			return q, apierrors.NewBadRequest(fmt.Sprintf("field selector %q is not supported", r.Field))
		}
	}
	if rolloutName != "" {
		if q.all {
			return q, apierrors.NewBadRequest("the field selector " + devicesv1.FieldRollout + " needs a namespace (rollout names are per namespace)")
		}
		ro := s.cfg.Catalog.Snapshot().Rollout(ns + "/" + rolloutName)
		if ro == nil {
			q.impossible = true
		} else {
			q.filter.RolloutUID = ro.UID
		}
	}
	return q, nil
}

type continueToken struct {
	V     int    `json:"v"`
	After string `json:"after"`
}

func encodeContinue(after string) string {
	b, _ := json.Marshal(continueToken{V: 1, After: after})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var t continueToken
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.V != 1 || t.After == "" {
		return "", errors.New("invalid continue token: pass the metadata.continue of the previous page unchanged")
	}
	return t.After, nil
}

// storeError maps store errors: an unavailable database is 503 (clients
// retry), anything else 500.
func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, devicestore.ErrUnavailable):
		return apierrors.NewServiceUnavailable("the device store is unavailable; retry later")
	}
	return apierrors.NewInternalError(fmt.Errorf("device store: %w", err))
}

// snapshotter is the catalog as the device API reads it.
type snapshotter interface{ Snapshot() *catalog.Snapshot }

// ListPage answers one list request as the API does, for in-process
// callers (the benchmarks measure a million-device walk with it, without
// a kube-apiserver to delegate authentication to).
func ListPage(ctx context.Context, cfg Config, namespace string, opts *metainternalversion.ListOptions) (*devicesv1.DeviceList, error) {
	s := &deviceStorage{cfg: &cfg}
	obj, err := s.List(genericapirequest.WithNamespace(ctx, namespace), opts)
	if err != nil {
		return nil, err
	}
	return obj.(*devicesv1.DeviceList), nil
}
