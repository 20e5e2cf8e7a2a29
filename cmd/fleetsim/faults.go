package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Fault kinds.
const (
	faultInstall = "install-failure"
	faultCorrupt = "corrupt-download"
	faultNever   = "never-return"
	faultRevert  = "revert"
)

// faultRule is one RATE[@SEL] flag value.
type faultRule struct {
	Rate float64
	// Version selects the target version (version=X); Key/Value a device
	// label (k=v). Both empty: every device.
	Version    string
	Key, Value string
}

func (r faultRule) String() string {
	s := strconv.FormatFloat(r.Rate, 'g', -1, 64)
	switch {
	case r.Version != "":
		s += "@version=" + r.Version
	case r.Key != "":
		s += "@" + r.Key + "=" + r.Value
	}
	return s
}

func parseFaultRule(s string) (faultRule, error) {
	rate, sel, hasSel := strings.Cut(strings.TrimSpace(s), "@")
	var r faultRule
	f, err := strconv.ParseFloat(rate, 64)
	if err != nil || f < 0 || f > 1 {
		return r, fmt.Errorf("rate %q must be a number in [0,1]", rate)
	}
	r.Rate = f
	if hasSel {
		k, v, ok := strings.Cut(sel, "=")
		if !ok || k == "" || v == "" {
			return r, fmt.Errorf("selector %q must be version=X or a label k=v", sel)
		}
		if k == "version" {
			r.Version = v
		} else {
			r.Key, r.Value = k, v
		}
	}
	return r, nil
}

// faultRules collects a repeatable flag.
type faultRules []faultRule

func (f faultRules) String() string {
	parts := make([]string, len(f))
	for i, r := range f {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

func (f *faultRules) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		r, err := parseFaultRule(part)
		if err != nil {
			return err
		}
		*f = append(*f, r)
	}
	return nil
}

// faults decides, deterministically from the seed, which devices suffer
// which fault when installing which version.
type faults struct {
	seed  uint64
	rules map[string]faultRules
}

// hit reports whether device (with labels) gets fault kind when its target
// is version. The first rule whose selector matches decides; the decision
// is a hash of seed, kind, device and version compared with the rate.
func (f *faults) hit(kind, device, version string, labels map[string]string) bool {
	for _, r := range f.rules[kind] {
		switch {
		case r.Version != "" && r.Version != version:
			continue
		case r.Key != "" && labels[r.Key] != r.Value:
			continue
		}
		return unitHash(f.seed, kind, device, version) < r.Rate
	}
	return false
}

// unitHash maps its inputs to [0,1).
func unitHash(seed uint64, parts ...string) float64 {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}
