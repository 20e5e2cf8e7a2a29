package ddi

import (
	"maps"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// Attribute names read from configData (docs/hawkbit-ddi.md): the running
// version, and labels under a prefix. Other attributes are accepted and
// not kept.
const (
	AttrVersion     = "version"
	AttrLabelPrefix = "label."
)

// serveConfigData takes the device's attributes: "version" is its running
// version, "label.<key>" its labels (the enrollment's labels win). It
// always answers 200 to a well-formed body: a client whose PUT fails asks
// again at once (SWUpdate loops on it).
func (h *Handler) serveConfigData(w http.ResponseWriter, r *http.Request, p path) {
	d, g, ok := h.device(w, r, p, false, true)
	if !ok {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	c, err := ParseConfigData(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "ddi.badRequest", err.Error())
		return
	}
	ctx := r.Context()
	now := h.core.Now()
	labels, dropped := applyLabels(d.Labels, g.Labels, c)
	if len(dropped) > 0 {
		h.log.V(1).Info("attributes not taken as labels", "device", d.ID, "keys", dropped)
	}
	if len(labels) > protov1.MaxLabels {
		// As for native devices: a device has at most MaxLabels labels.
		h.log.Info("label attributes refused: too many labels", "device", d.ID, "labels", len(labels), "max", protov1.MaxLabels)
		labels = d.Labels
	}
	if !maps.Equal(labels, d.Labels) {
		// A re-enrollment with the device's own key and token updates its
		// labels and bumps its sequence, so fleet sync re-matches it.
		nd := d
		nd.Labels = labels
		if _, _, err := h.store.Enroll(ctx, nd); err != nil {
			h.fail(w, r, "update labels", err)
			return
		}
	}
	v, ok := c.Data[AttrVersion]
	if ok && c.Mode != "remove" && v != d.Version && protov1.ValidateVersion(v) != nil {
		// Not stored (the rules would skip the device for it anyway), and
		// still 200: the client would retry at once.
		h.log.Info("configData version attribute refused", "device", d.ID, "err", protov1.ValidateVersion(v).Error())
		ok = false
	}
	if ok && c.Mode != "remove" && v != d.Version {
		if err := h.store.SetRunning(ctx, d.ID, v, d.SecurityFloor, now); err != nil {
			h.fail(w, r, "record running version", err)
			return
		}
	}
	h.attrs.mark(d.ID, now)
	w.WriteHeader(http.StatusOK)
}

// applyLabels returns the device's labels after the attributes: merge adds
// them, replace starts over, remove deletes the named ones; the
// enrollment's labels are set last, so a device cannot move itself out of
// them. Attributes that are not valid label keys or values are dropped
// (and named).
func applyLabels(cur, enrollment map[string]string, c ConfigData) (map[string]string, []string) {
	out := map[string]string{}
	if c.Mode != "replace" {
		maps.Copy(out, cur)
	}
	var dropped []string
	for k, v := range c.Data {
		key, ok := strings.CutPrefix(k, AttrLabelPrefix)
		if !ok {
			continue
		}
		if c.Mode == "remove" {
			delete(out, key)
			continue
		}
		if len(validation.IsQualifiedName(key)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
			dropped = append(dropped, k)
			continue
		}
		out[key] = v
	}
	maps.Copy(out, enrollment)
	if len(out) == 0 && cur == nil {
		return nil, dropped
	}
	return out, dropped
}
