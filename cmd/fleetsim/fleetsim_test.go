package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func readFake(name string) ([]byte, error) {
	if strings.HasSuffix(name, ".pem") {
		return []byte("PEM " + name), nil
	}
	return nil, errors.New("no such file " + name)
}

func TestParseOptions(t *testing.T) {
	base := []string{"--server", "https://ota", "--bootstrap-token", "tok", "--assignment-key", "a.pem", "--vendor-key", "v.pem"}
	o, err := parseOptions(append(base,
		"--devices", "10", "--labels", "region=eu:80,region=us:20;hw=rev1:50,hw=rev2:50",
		"--install-failure", "0.1", "--install-failure", "0.5@version=2.0.0", "--corrupt-download", "1@region=us",
		"--poll-interval", "250ms", "--progress", "none", "--duration", "3s"), &bytes.Buffer{}, readFake)
	if err != nil {
		t.Fatal(err)
	}
	if o.devices != 10 || o.concurrency != 1024 || o.poll != 250*time.Millisecond || o.duration != 3*time.Second || len(o.labels) != 2 {
		t.Fatalf("options %+v", o)
	}
	if got := o.faults[faultInstall].String(); got != "0.1,0.5@version=2.0.0" {
		t.Fatalf("install rules %q", got)
	}
	if r := o.faults[faultCorrupt]; len(r) != 1 || r[0].Key != "region" || r[0].Value != "us" || r[0].Rate != 1 {
		t.Fatalf("corrupt rules %+v", r)
	}
	if string(o.assignmentKey) != "PEM a.pem" || len(o.vendorKeys) != 1 {
		t.Fatal("keys not read")
	}

	bad := []struct {
		name string
		args []string
		want string
	}{
		{"empty server in list", append(slices.Clone(base), "--server", "https://a,,https://b"), "empty URL"},
		{"missing server", []string{"--bootstrap-token", "t", "--assignment-key", "a.pem", "--vendor-key", "v.pem"}, "--server is required"},
		{"rate above 1", append(slices.Clone(base), "--revert", "1.5"), "must be a number in [0,1]"},
		{"bad selector", append(slices.Clone(base), "--never-return", "0.1@region"), "version=X or a label"},
		{"mixed keys", append(slices.Clone(base), "--labels", "region=eu:1,hw=rev1:1"), "mixes keys"},
		{"bad weight", append(slices.Clone(base), "--labels", "region=eu:x"), "weight"},
		{"bad progress", append(slices.Clone(base), "--progress", "fancy"), "--progress"},
		{"no devices", append(slices.Clone(base), "--devices", "0"), "--devices"},
		{"no concurrency", append(slices.Clone(base), "--concurrency", "0"), "--concurrency must be at least 1"},
		{"summary interval without file", append(slices.Clone(base), "--summary-interval", "1s"), "--summary-interval needs --summary-json"},
		{"negative summary interval", append(slices.Clone(base), "--summary-json", "s.json", "--summary-interval", "-1s"), "must not be negative"},
		{"missing key file", []string{"--server", "s", "--bootstrap-token", "t", "--assignment-key", "a.key", "--vendor-key", "v.pem"}, "no such file"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseOptions(tc.args, &bytes.Buffer{}, readFake)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestAssignLabelsExactAndIndependent(t *testing.T) {
	groups, err := parseLabels("region=eu:80,region=us:20;hw=rev1:50,hw=rev2:50")
	if err != nil {
		t.Fatal(err)
	}
	labels := assignLabels(groups, 500, 7)
	count := map[string]int{}
	for _, l := range labels {
		count["region="+l["region"]]++
		count["hw="+l["hw"]]++
		count[l["region"]+"/"+l["hw"]]++
	}
	if count["region=eu"] != 400 || count["region=us"] != 100 || count["hw=rev1"] != 250 || count["hw=rev2"] != 250 {
		t.Fatalf("counts %v", count)
	}
	// Independent groups: eu devices split about evenly between revisions.
	if c := count["eu/rev1"]; c < 160 || c > 240 {
		t.Fatalf("eu/rev1 = %d, groups look correlated", c)
	}
	// Deterministic for a seed.
	again := assignLabels(groups, 500, 7)
	for i := range labels {
		if labels[i]["region"] != again[i]["region"] || labels[i]["hw"] != again[i]["hw"] {
			t.Fatal("not deterministic")
		}
	}
	if got := apportion(labelGroup{{Weight: 1}, {Weight: 1}, {Weight: 1}}, 10); got[0]+got[1]+got[2] != 10 {
		t.Fatalf("apportion %v", got)
	}
}

func TestFaultSelectorsAndRates(t *testing.T) {
	f := &faults{seed: 42, rules: map[string]faultRules{}}
	set := func(kind, v string) {
		r := f.rules[kind]
		if err := r.Set(v); err != nil {
			t.Fatal(err)
		}
		f.rules[kind] = r
	}
	set(faultInstall, "1@version=2.0.0")
	set(faultRevert, "1@region=us")
	set(faultRevert, "0")
	set(faultCorrupt, "0.3")
	eu, us := map[string]string{"region": "eu"}, map[string]string{"region": "us"}
	cases := []struct {
		kind, device, version string
		labels                map[string]string
		want                  bool
	}{
		{faultInstall, "d1", "2.0.0", eu, true},
		{faultInstall, "d1", "2.1.0", eu, false},
		{faultRevert, "d1", "2.0.0", us, true},
		{faultRevert, "d1", "2.0.0", eu, false}, // falls to the 0 rule
		{faultNever, "d1", "2.0.0", eu, false},  // no rule
	}
	for _, c := range cases {
		if got := f.hit(c.kind, c.device, c.version, c.labels); got != c.want {
			t.Errorf("%s %s %s %v = %v, want %v", c.kind, c.device, c.version, c.labels, got, c.want)
		}
	}
	hits := 0
	for i := range 10000 {
		id := "sim-" + string(rune('a'+i%26)) + strings.Repeat("x", i%7) + string(rune(i))
		if f.hit(faultCorrupt, id, "2.0.0", eu) {
			hits++
		}
		if f.hit(faultCorrupt, id, "2.0.0", eu) != f.hit(faultCorrupt, id, "2.0.0", us) {
			t.Fatal("decision depends on labels without a label selector")
		}
	}
	if rate := float64(hits) / 10000; math.Abs(rate-0.3) > 0.03 {
		t.Fatalf("corrupt rate %.3f, want about 0.3", rate)
	}
}

func TestSummaryJSONKeys(t *testing.T) {
	var b bytes.Buffer
	if err := writeSummaryJSON(&b, Summary{Devices: 1, ByVersion: map[string]int{"1.0.0": 1}, ByState: map[string]int{"idle": 1},
		Refusals: map[string]int{}, DevicesDetail: []DeviceDetail{{ID: "sim-00000", Version: "1.0.0", LastState: "idle"}}}); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"devices", "byVersion", "byState", "refusals", "reports", "responses", "retryAfter", "transportErrors", "devicesDetail"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("summary lacks %q: %s", k, b.String())
		}
	}
	d := m["devicesDetail"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "version", "securityFloor", "pendingFloor", "lastState", "lastReason"} {
		if _, ok := d[k]; !ok {
			t.Fatalf("device detail lacks %q", k)
		}
	}
}

func TestServerList(t *testing.T) {
	o, err := parseOptions([]string{"--server", "http://a, http://b,http://c", "--bootstrap-token", "t",
		"--assignment-key", "a.pem", "--vendor-key", "v.pem", "--devices", "5"}, &bytes.Buffer{}, readFake)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.servers, []string{"http://a", "http://b", "http://c"}) {
		t.Fatalf("servers %q", o.servers)
	}
	o, err = parseOptions([]string{"--server", "https://ota", "--bootstrap-token", "t",
		"--assignment-key", "a.pem", "--vendor-key", "v.pem"}, &bytes.Buffer{}, readFake)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.servers, []string{"https://ota"}) {
		t.Fatalf("one server: %q", o.servers)
	}
}
