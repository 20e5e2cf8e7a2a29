package mender_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"pgregory.net/rapid"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/internal/rollout"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/mender"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

func msg(level, text string) mender.LogMessage { return mender.LogMessage{Level: level, Message: text} }

func TestFailureReason(t *testing.T) {
	long := "start " + strings.Repeat("x", 2000) + " END"
	cases := []struct {
		name string
		msgs []mender.LogMessage
		want string
	}{
		{"error levels picked, newest last", []mender.LogMessage{
			msg("info", "a"), msg("error", "b"), msg("debug", "c"), msg("FATAL", "d"), msg("info", "e"), msg("panic", "f"), msg("warning", "g"),
		}, "mender: b; d; f"},
		{"no error: the last three", []mender.LogMessage{
			msg("info", "1"), msg("info", "2"), msg("info", "3"), msg("warning", "4"), msg("debug", "5"),
		}, "mender: 3; 4; 5"},
		{"no error, fewer than three", []mender.LogMessage{msg("info", "only")}, "mender: only"},
		{"control characters", []mender.LogMessage{msg("error", "a\nb\tc\x7fd\x00e\r")}, "mender: a b c d e "},
		{"invalid UTF-8", []mender.LogMessage{msg("error", "bad \xff byte")}, "mender: bad \uFFFD byte"},
		{"bounded, tail kept", []mender.LogMessage{msg("error", long)}, "mender: …" + long[len(long)-501:]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := mender.FailureReason(mender.DeploymentLog{Messages: tc.msgs})
			if got != tc.want {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
			checkReason(t, got)
		})
	}
	// Multi-byte runes: the cut never splits one, whatever the length.
	for _, r := range []string{"é", "€", "𝄞"} {
		for n := 160; n < 200; n++ {
			got := mender.FailureReason(mender.DeploymentLog{Messages: []mender.LogMessage{msg("error", strings.Repeat(r, n)+"!")}})
			checkReason(t, got)
			if !strings.HasSuffix(got, r+"!") {
				t.Fatalf("%d × %s: tail lost: %q", n, r, got[len(got)-10:])
			}
		}
	}
}

// checkReason holds a failure reason to what protocol v1 accepts.
func checkReason(t *testing.T, s string) {
	t.Helper()
	if len(s) > protov1.MaxReasonLen || !utf8.ValidString(s) || !strings.HasPrefix(s, "mender: ") {
		t.Fatalf("reason of %d bytes, valid UTF-8 %v: %q", len(s), utf8.ValidString(s), s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			t.Fatalf("control character %U in %q", r, s)
		}
	}
}

func TestInventoryLabels(t *testing.T) {
	manyCur := map[string]string{}
	for i := range protov1.MaxLabels - 2 {
		manyCur[fmt.Sprintf("k%02d", i)] = "v"
	}
	cases := []struct {
		name              string
		cur, enroll, attr map[string]string
		replace           bool
		want              map[string]string
		dropped           []string
	}{
		{
			name:    "put replaces inventory labels",
			cur:     map[string]string{"region": "eu", "mender.io/a": "1", "mender.io/b": "2"},
			enroll:  map[string]string{"region": "eu"},
			attr:    map[string]string{"a": "3"},
			replace: true,
			want:    map[string]string{"region": "eu", "mender.io/a": "3"},
		},
		{
			name:   "patch merges",
			cur:    map[string]string{"region": "eu", "mender.io/a": "1", "mender.io/b": "2"},
			enroll: map[string]string{"region": "eu"},
			attr:   map[string]string{"a": "3"},
			want:   map[string]string{"region": "eu", "mender.io/a": "3", "mender.io/b": "2"},
		},
		{
			name:    "artifact name and client version are no labels",
			attr:    map[string]string{"artifact_name": "release-1", "mender_client_version": "3.4.0", "device_type": "sensor-v1"},
			replace: true,
			want:    map[string]string{"mender.io/device_type": "sensor-v1"},
		},
		{
			name: "invalid names and values dropped",
			attr: map[string]string{
				"kernel": "Linux version 5.10", "mac_eth0": "02:00:00:00:00:01", "ipv4": "10.0.0.2/24",
				"bad name": "x", strings.Repeat("n", 64): "x", "long": strings.Repeat("v", 64),
				"ok": "fine", "empty": "",
			},
			replace: true,
			want:    map[string]string{"mender.io/ok": "fine", "mender.io/empty": ""},
			dropped: []string{"bad name", "ipv4", "kernel", "long", "mac_eth0", strings.Repeat("n", 64)},
		},
		{
			name:    "enrollment labels win",
			cur:     map[string]string{"mender.io/hostname": "fixed"},
			enroll:  map[string]string{"mender.io/hostname": "fixed", "region": "eu"},
			attr:    map[string]string{"hostname": "dev-1"},
			replace: true,
			want:    map[string]string{"mender.io/hostname": "fixed", "region": "eu"},
		},
		{
			name:    "labels without the prefix stay on put",
			cur:     map[string]string{"old": "x", "mender.io/a": "1"},
			attr:    map[string]string{},
			replace: true,
			want:    map[string]string{"old": "x"},
		},
		{
			name:    "at most MaxLabels, dropped in name order",
			cur:     manyCur,
			attr:    map[string]string{"e": "1", "d": "1", "c": "1", "b": "1", "a": "1"},
			replace: true,
			want:    union(manyCur, map[string]string{"mender.io/a": "1", "mender.io/b": "1"}),
			dropped: []string{"c", "d", "e"},
		},
		{
			name: "an existing label may change at the limit",
			cur:  union(manyCur, map[string]string{"mender.io/a": "1", "mender.io/b": "1"}),
			attr: map[string]string{"b": "2", "c": "1"},
			want: union(manyCur, map[string]string{"mender.io/a": "1", "mender.io/b": "2"}),
			dropped: []string{
				"c",
			},
		},
		{
			name:    "nothing stays nil",
			attr:    map[string]string{"artifact_name": "x"},
			replace: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cur := maps.Clone(tc.cur)
			got, dropped := mender.InventoryLabels(cur, tc.enroll, tc.attr, tc.replace)
			if !maps.Equal(got, tc.want) || (tc.want == nil) != (got == nil) {
				t.Fatalf("labels %v, want %v", got, tc.want)
			}
			if !slices.Equal(dropped, tc.dropped) {
				t.Fatalf("dropped %q, want %q", dropped, tc.dropped)
			}
			if !maps.Equal(cur, tc.cur) {
				t.Fatalf("the current labels were changed: %v", cur)
			}
			if len(got) > protov1.MaxLabels {
				t.Fatalf("%d labels", len(got))
			}
		})
	}
}

func union(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// menderRelease is a release object with a Mender header and, when keyed,
// its content key Secret (no blob: the catalog does not read it).
func menderRelease(keys map[string]*corev1.Secret, ns, name, version, artifact string, keyed bool, types ...string) otav1.FirmwareRelease {
	uid := "uid-" + ns + "-" + name
	if keyed {
		k, _ := envelope.NewKey()
		keys[ns+"/"+name+"-key"] = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-key", Labels: map[string]string{otav1.LabelReleaseUID: uid}},
			Data:       map[string][]byte{otav1.ContentKeyField: k},
		}
	}
	return otav1.FirmwareRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: k8stypes.UID(uid)},
		Spec: otav1.FirmwareReleaseSpec{
			Version: version, Format: otav1.FormatMender, Compatibility: otav1.Compatibility{DeviceTypes: types},
		},
		Status: otav1.FirmwareReleaseStatus{
			Artifact: &otav1.Artifact{
				PlainSHA256: strings.Repeat("a", 64), EncryptedSHA256: strings.Repeat("b", 64), KeySecretName: name + "-key", Version: version,
				Mender: &otav1.MenderArtifact{Name: artifact, DeviceTypes: types},
			},
			Conditions: []metav1.Condition{{Type: otav1.ConditionReady, Status: metav1.ConditionTrue, Reason: "ArtifactReady", LastTransitionTime: metav1.Now()}},
		},
	}
}

func TestRunningVersion(t *testing.T) {
	keys := map[string]*corev1.Secret{}
	snap := catalog.Build(nil, []otav1.FirmwareRelease{
		menderRelease(keys, tenant, "fw-2", "2.0.0", "release-2", true, deviceType),
		menderRelease(keys, tenant, "dup-a", "1.0.0", "dup", true, deviceType),
		menderRelease(keys, tenant, "dup-b", "1.1.0", "dup", true, deviceType),
		menderRelease(keys, tenant, "nokey", "3.0.0", "unusable", false, deviceType),
		menderRelease(keys, "other", "fw-9", "9.0.0", "other-ns", true, deviceType),
	}, keys)
	d := devicestore.Device{ID: "mender-x", Namespace: tenant, Type: deviceType}
	other := d
	other.Type = "other-board"
	for _, tc := range []struct {
		name     string
		dev      devicestore.Device
		artifact string
		want     string
	}{
		{"a release's artifact", d, "release-2", "2.0.0"},
		{"the highest of two releases", d, "dup", "1.1.0"},
		{"a release for another type", other, "release-2", "0.0.0-unreleased+release-2"},
		{"a release of another namespace", d, "other-ns", "0.0.0-unreleased+other-ns"},
		{"an unusable release", d, "unusable", "0.0.0-unreleased+unusable"},
		{"a semantic version", d, "1.2.3", "1.2.3"},
		{"a factory image", d, "sensor-2.0.0", "0.0.0-unreleased+sensor-2.0.0"},
		{"after a failed update", d, "release-2_INCONSISTENT", "0.0.0-unreleased+release-2-INCONSISTENT"},
		{"spaces", d, "factory-image 1", "0.0.0-unreleased+factory-image-1"},
		{"empty identifiers", d, ".a..b.", "0.0.0-unreleased+-a.-b-"},
		{"control characters", d, "a\tb\x7f", "0.0.0-unreleased+a-b-"},
		{"non-ASCII, byte by byte", d, "fw-é", "0.0.0-unreleased+fw---"},
		{"too long", d, strings.Repeat("v", 200), "0.0.0-unreleased+" + strings.Repeat("v", protov1.MaxVersionLen-len("0.0.0-unreleased+"))},
		{"too long with dots", d, strings.Repeat("v.", 100), "0.0.0-unreleased+" + strings.Repeat("v.", (protov1.MaxVersionLen-len("0.0.0-unreleased+"))/2) + "v"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mender.RunningVersion(snap, tc.dev, tc.artifact)
			if got != tc.want {
				t.Fatalf("%q, want %q", got, tc.want)
			}
			if err := protov1.ValidateVersion(got); err != nil {
				t.Fatalf("%q: %v", got, err)
			}
			if !rollout.ParseVersion(got).Valid() {
				t.Fatalf("%q is not a semantic version", got)
			}
		})
	}
}

// TestUnreleasedVersion: whatever the artifact name, its version is a
// valid semantic version of at most MaxVersionLen bytes, below every
// release (0.0.0 included), equal in precedence to every other unreleased
// name, and the same name always gives the same version.
func TestUnreleasedVersion(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		name := rapid.OneOf(rapid.String(), rapid.StringMatching(`[a-z0-9._ -]{0,200}`)).Draw(t, "name")
		v := mender.UnreleasedVersion(name)
		if err := protov1.ValidateVersion(v); err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		pv := rollout.ParseVersion(v)
		if !pv.Valid() {
			t.Fatalf("%q is not a semantic version", v)
		}
		for _, rel := range []string{"0.0.0", "0.0.1-rc.1", "1.0.0"} {
			if pv.Compare(rollout.ParseVersion(rel)) >= 0 {
				t.Fatalf("%q is not below %s", v, rel)
			}
		}
		if pv.Compare(rollout.ParseVersion(mender.UnreleasedPrefix)) != 0 {
			t.Fatalf("%q does not rank as %s", v, mender.UnreleasedPrefix)
		}
		if mender.UnreleasedVersion(name) != v {
			t.Fatal("not deterministic")
		}
	})
}

var uuidShape = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestDeploymentID(t *testing.T) {
	// Ids are derived, never stored: a device holds one across server
	// upgrades, so they must never change.
	if got := mender.DeploymentID("rollout-uid-1", mender.KindInstall); got != "c43983db-983b-4c7d-ca34-bbedacfe9743" {
		t.Fatalf("install id %s changed", got)
	}
	if got := mender.DeploymentID("rollout-uid-1", mender.KindRollback); got != "6f2bf187-77c7-169f-d91a-012a023d6fe7" {
		t.Fatalf("rollback id %s changed", got)
	}
	seen := map[string]string{}
	for _, uid := range []string{"rollout-uid-1", "rollout-uid-2", "", "a\x00install", "a"} {
		for _, k := range []mender.Kind{mender.KindInstall, mender.KindRollback} {
			id := mender.DeploymentID(uid, k)
			if !uuidShape.MatchString(id) {
				t.Fatalf("%q %s: %q is not UUID-shaped", uid, k, id)
			}
			if id != mender.DeploymentID(uid, k) {
				t.Fatalf("not stable")
			}
			what := fmt.Sprintf("%q/%s", uid, k)
			if prev, dup := seen[id]; dup {
				t.Fatalf("%s and %s share id %s", prev, what, id)
			}
			seen[id] = what
		}
	}
}

func TestParseAuthRequest(t *testing.T) {
	enc := func(idData, pub, tt string) string {
		b, _ := json.Marshal(mender.AuthRequest{IDData: idData, Pubkey: pub, TenantToken: tt})
		return string(b)
	}
	a, err := mender.ParseAuthRequest([]byte(enc(`{"mac":"02:00:00:00:00:01"}`, "PEM", "tt") + "\n"))
	if err != nil || a.IDData != `{"mac":"02:00:00:00:00:01"}` || a.Pubkey != "PEM" || a.TenantToken != "tt" {
		t.Fatalf("%+v %v", a, err)
	}
	if a, err := mender.ParseAuthRequest([]byte(enc(`{}`, "PEM", ""))); err != nil || a.TenantToken != "" {
		t.Fatalf("without tenant token: %+v %v", a, err)
	}
	for name, body := range map[string]string{
		"not JSON":          `{"id_data":`,
		"a list":            `[]`,
		"no id_data":        enc("", "PEM", ""),
		"id_data too long":  enc(`{"k":"`+strings.Repeat("x", mender.MaxIDDataBytes)+`"}`, "PEM", ""),
		"id_data a list":    enc(`["mac"]`, "PEM", ""),
		"id_data a string":  enc(`"mac"`, "PEM", ""),
		"id_data null":      enc(`null`, "PEM", ""),
		"id_data not JSON":  enc(`{mac}`, "PEM", ""),
		"no pubkey":         enc(`{"mac":"x"}`, "", ""),
		"id_data an object": `{"id_data":{"mac":"x"},"pubkey":"PEM"}`,
	} {
		if _, err := mender.ParseAuthRequest([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseNext(t *testing.T) {
	q := func(kv ...string) url.Values {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	p, err := mender.ParseNext(true, "POST", nil, []byte(`{"device_provides":{"artifact_name":"release-1","device_type":"sensor-v1","rootfs-image.version":"1"},"update_control_map":true}`))
	if err != nil || p["artifact_name"] != "release-1" || p["device_type"] != "sensor-v1" || p["rootfs-image.version"] != "1" {
		t.Fatalf("v2: %v %v", p, err)
	}
	p, err = mender.ParseNext(false, "POST", nil, []byte(`{"artifact_name":"release-1","device_type":"sensor-v1"}`))
	if err != nil || p["artifact_name"] != "release-1" || p["device_type"] != "sensor-v1" {
		t.Fatalf("v1 POST: %v %v", p, err)
	}
	p, err = mender.ParseNext(false, "GET", q("artifact_name", "release-1", "device_type", "sensor-v1", "other", "x"), nil)
	if err != nil || len(p) != 2 || p["artifact_name"] != "release-1" {
		t.Fatalf("v1 GET: %v %v", p, err)
	}
	many := map[string]string{"artifact_name": "a", "device_type": "t"}
	for i := range mender.MaxProvides {
		many[fmt.Sprint("p", i)] = "v"
	}
	manyJSON, _ := json.Marshal(many)
	for _, tc := range []struct {
		name   string
		v2     bool
		method string
		query  url.Values
		body   string
	}{
		{"v2 not JSON", true, "POST", nil, `{`},
		{"v2 provides not an object", true, "POST", nil, `{"device_provides":["a"]}`},
		{"v2 no provides", true, "POST", nil, `{}`},
		{"v2 provides null", true, "POST", nil, `{"device_provides":null}`},
		{"v2 provide not a string", true, "POST", nil, `{"device_provides":{"artifact_name":1,"device_type":"t"}}`},
		{"v1 not JSON", false, "POST", nil, `x`},
		{"v1 the v2 shape", false, "POST", nil, `{"device_provides":{"artifact_name":"a","device_type":"t"}}`},
		{"no artifact_name", false, "POST", nil, `{"device_type":"t"}`},
		{"empty artifact_name", false, "POST", nil, `{"artifact_name":"","device_type":"t"}`},
		{"no device_type", false, "POST", nil, `{"artifact_name":"a"}`},
		{"artifact_name too long", false, "POST", nil, `{"artifact_name":"` + strings.Repeat("a", mender.MaxArtifactName+1) + `","device_type":"t"}`},
		{"a provide too long", false, "POST", nil, `{"artifact_name":"a","device_type":"t","x":"` + strings.Repeat("v", 1024) + `"}`},
		{"too many provides", false, "POST", nil, string(manyJSON)},
		{"GET without artifact_name", false, "GET", q("device_type", "t"), ""},
		{"GET without device_type", false, "GET", q("artifact_name", "a"), ""},
		{"GET not UTF-8", false, "GET", q("artifact_name", "a\xff", "device_type", "t"), ""},
	} {
		if p, err := mender.ParseNext(tc.v2, tc.method, tc.query, []byte(tc.body)); err == nil {
			t.Errorf("%s: accepted as %v", tc.name, p)
		}
	}
	if _, err := mender.ParseNext(false, "POST", nil, []byte(`{"artifact_name":"`+strings.Repeat("a", mender.MaxArtifactName)+`","device_type":"t"}`)); err != nil {
		t.Fatalf("artifact_name of the longest length: %v", err)
	}
}

func TestParseStatus(t *testing.T) {
	for _, st := range []string{"downloading", "installing", "rebooting", "success", "failure", "already-installed",
		"pause_before_installing", "pause_before_committing", "pause_before_rebooting"} {
		s, err := mender.ParseStatus([]byte(`{"status":"` + st + `","substate":"ArtifactInstall"}`))
		if err != nil || s.Status != st || s.SubState != "ArtifactInstall" {
			t.Fatalf("%s: %+v %v", st, s, err)
		}
	}
	for _, body := range []string{`{"status":"exploded"}`, `{"status":""}`, `{}`, `{"status":1}`, `status`, `{"status":"Success"}`} {
		if _, err := mender.ParseStatus([]byte(body)); err == nil {
			t.Errorf("%s: accepted", body)
		}
	}
}

func TestParseLog(t *testing.T) {
	l, err := mender.ParseLog([]byte(`{"messages":[{"timestamp":"2026-01-02T03:04:05Z","level":"error","message":"boom"}]}`))
	if err != nil || len(l.Messages) != 1 || l.Messages[0] != (mender.LogMessage{Timestamp: "2026-01-02T03:04:05Z", Level: "error", Message: "boom"}) {
		t.Fatalf("%+v %v", l, err)
	}
	for _, body := range []string{`{"messages":[]}`, `{"messages":null}`, `{}`, `[]`, `{"messages":"x"}`, `x`} {
		if _, err := mender.ParseLog([]byte(body)); err == nil {
			t.Errorf("%s: accepted", body)
		}
	}
}

func TestParseInventory(t *testing.T) {
	got, err := mender.ParseInventory([]byte(`[{"name":"device_type","value":"sensor-v1"},{"name":"ipv4","value":["10.0.0.2/24"]},{"name":"n","value":3},{"name":"e","value":""}]`))
	if err != nil || !maps.Equal(got, map[string]string{"device_type": "sensor-v1", "e": ""}) {
		t.Fatalf("%v %v", got, err)
	}
	if got, err := mender.ParseInventory([]byte(`[]`)); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	tooMany := "[" + strings.Repeat(`{"name":"a","value":"b"},`, mender.MaxInventoryAttributes) + `{"name":"a","value":"b"}]`
	for name, body := range map[string]string{
		"not a list":     `{"name":"a","value":"b"}`,
		"not JSON":       `[`,
		"no name":        `[{"value":"b"}]`,
		"too many":       tooMany,
		"name not text":  `[{"name":1,"value":"b"}]`,
		"element a list": `[["a","b"]]`,
	} {
		if _, err := mender.ParseInventory([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
