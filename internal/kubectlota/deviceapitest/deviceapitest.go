// Package deviceapitest is an HTTP server that answers like the aggregated
// device API (api/devices/v1alpha1) for the plugin's tests: device lists in
// pages with continue tokens and field selectors, the decision subresource,
// 404s as metav1.Status, and a continue token that expires on demand.
package deviceapitest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	devv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
)

// Server is a running fake device API.
type Server struct {
	*httptest.Server

	mu        sync.Mutex
	devices   []devv1.Device // in list order
	decisions map[string]devv1.DeviceDecision
	// expireAfter: a continue token for a page after this many is expired
	// (410); 0 never expires.
	expireAfter int
	requests    []*http.Request
}

// New starts a server with devices (any namespaces) and decisions keyed by
// namespace/name.
func New(devices []devv1.Device, decisions map[string]devv1.DeviceDecision) *Server {
	s := &Server{devices: devices, decisions: decisions}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// ExpireAfter makes continue tokens after n pages expired.
func (s *Server) ExpireAfter(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireAfter = n
}

// Requests are the requests served so far.
func (s *Server) Requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.requests...)
}

const prefix = "/apis/" + devv1.GroupName + "/v1alpha1/namespaces/"

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
	rest, ok := strings.CutPrefix(r.URL.Path, prefix)
	parts := strings.Split(rest, "/")
	if !ok || r.Method != http.MethodGet || len(parts) < 2 || parts[1] != devv1.ResourceDevices {
		status(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource", "")
		return
	}
	ns := parts[0]
	switch len(parts) {
	case 2:
		s.list(w, r, ns)
	case 4:
		if parts[3] != devv1.SubresourceDecision {
			status(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource", "")
			return
		}
		d, ok := s.decisions[ns+"/"+parts[2]]
		if !ok {
			status(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("devices.%s %q not found", devv1.GroupName, parts[2]), parts[2])
			return
		}
		d.APIVersion, d.Kind = devv1.SchemeGroupVersion.String(), "DeviceDecision"
		write(w, http.StatusOK, d)
	default:
		status(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource", "")
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, ns string) {
	q := r.URL.Query()
	sel, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		status(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error(), "")
		return
	}
	for _, req := range sel.Requirements() {
		switch req.Field {
		case devv1.FieldRollout, devv1.FieldState, devv1.FieldVersion, devv1.FieldType, "metadata.name", "metadata.namespace":
		default:
			status(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("field label not supported: %s", req.Field), "")
			return
		}
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	start, page := 0, 0
	if c := q.Get("continue"); c != "" {
		if _, err := fmt.Sscanf(c, "page-%d-at-%d", &page, &start); err != nil {
			status(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "invalid continue token", "")
			return
		}
		if s.expireAfter > 0 && page >= s.expireAfter {
			status(w, http.StatusGone, metav1.StatusReasonExpired, "The provided continue parameter is too old to display a consistent list result.", "")
			return
		}
	}
	var matching []devv1.Device
	for _, d := range s.devices {
		if d.Namespace == ns && matches(sel, d) {
			matching = append(matching, d)
		}
	}
	list := devv1.DeviceList{TypeMeta: metav1.TypeMeta{APIVersion: devv1.SchemeGroupVersion.String(), Kind: "DeviceList"}}
	end := len(matching)
	if limit > 0 && start+limit < end {
		end = start + limit
		list.Continue = fmt.Sprintf("page-%d-at-%d", page+1, end)
	}
	if start < len(matching) {
		list.Items = matching[start:end]
	}
	list.Items = append([]devv1.Device{}, list.Items...)
	write(w, http.StatusOK, list)
}

// matches applies the device API's field selectors: status.rollout selects
// devices with a record in the rollout, and status.state then means the
// state in that rollout.
func matches(sel fields.Selector, d devv1.Device) bool {
	var rollout string
	for _, req := range sel.Requirements() {
		if req.Field == devv1.FieldRollout {
			rollout = req.Value
		}
	}
	state := d.Status.State
	set := fields.Set{
		"metadata.name": d.Name, "metadata.namespace": d.Namespace,
		devv1.FieldVersion: d.Status.Version, devv1.FieldType: d.Status.Type,
	}
	if rollout != "" {
		state = ""
		for _, rec := range d.Status.Rollouts {
			if rec.Rollout == rollout {
				set[devv1.FieldRollout], state = rollout, rec.State
			}
		}
	}
	set[devv1.FieldState] = state
	return sel.Matches(set)
}

func status(w http.ResponseWriter, code int, reason metav1.StatusReason, msg, name string) {
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg,
	}
	if name != "" {
		st.Details = &metav1.StatusDetails{Name: name, Group: devv1.GroupName, Kind: devv1.ResourceDevices}
	}
	write(w, code, st)
}

func write(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
