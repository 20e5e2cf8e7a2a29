package mender

import (
	"maps"
	"net/http"
	"slices"

	"k8s.io/apimachinery/pkg/util/validation"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// LabelPrefix starts the labels inventory attributes become.
const LabelPrefix = "mender.io/"

// Attributes that are not taken as labels: artifact_name changes with
// every update, and a label that does would move the device between
// fleets at each one; the client's version says nothing a fleet selects.
var notLabels = map[string]bool{"artifact_name": true, "mender_client_version": true}

// serveInventory takes the device's inventory: each attribute whose name
// and value are valid label parts becomes the label
// "mender.io/<name>" (the enrollment's labels are set last and win);
// the device keeps at most protov1.MaxLabels labels.
func (h *Handler) serveInventory(w http.ResponseWriter, r *http.Request) {
	d, attrs, ok := parsed(h, w, r, ParseInventory)
	if !ok {
		return
	}
	enrollment := h.cfg.Auth.EnrollmentLabels(d.Namespace, d.Enrollment)
	labels, dropped := InventoryLabels(d.Labels, enrollment, attrs, r.Method == http.MethodPut)
	if len(dropped) > 0 {
		h.log.V(1).Info("inventory attributes not taken as labels", "device", d.ID, "attributes", dropped)
	}
	if !maps.Equal(labels, d.Labels) {
		// A re-enrollment with the device's own key and token hash
		// updates its labels and bumps its sequence, so fleet sync
		// re-matches it.
		nd := d
		nd.Labels = labels
		if _, _, err := h.store.Enroll(r.Context(), nd); err != nil {
			h.fail(w, r, "update labels", err)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// InventoryLabels returns the device's labels after an inventory upload:
// replace (PUT) drops inventory labels the upload no longer has, merge
// (PATCH) keeps them; labels without the prefix are the enrollment's and
// stay. Attributes that cannot be labels are named in dropped; past
// protov1.MaxLabels, attributes are dropped in name order.
func InventoryLabels(cur, enrollment map[string]string, attrs map[string]string, replace bool) (map[string]string, []string) {
	out := map[string]string{}
	for k, v := range cur {
		if !replace || !hasPrefix(k) {
			out[k] = v
		}
	}
	maps.Copy(out, enrollment)
	var dropped []string
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		v := attrs[name]
		key := LabelPrefix + name
		switch {
		case notLabels[name]:
			continue
		case len(validation.IsQualifiedName(key)) > 0 || len(validation.IsValidLabelValue(v)) > 0:
			dropped = append(dropped, name)
			continue
		}
		if _, taken := enrollment[key]; taken {
			continue
		}
		if _, had := out[key]; !had && len(out) >= protov1.MaxLabels {
			dropped = append(dropped, name)
			continue
		}
		out[key] = v
	}
	if len(out) == 0 && cur == nil {
		return nil, dropped
	}
	return out, dropped
}

func hasPrefix(k string) bool {
	return len(k) > len(LabelPrefix) && k[:len(LabelPrefix)] == LabelPrefix
}
