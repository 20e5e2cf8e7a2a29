package ddi

import (
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/internal/rollout"
)

// Request bodies as the clients build them: SWUpdate 2022.12
// (suricatta/server_hawkbit.c: json_hawkbit_deployment_feedback,
// json_hawkbit_cancelation_feedback, json_hawkbit_config_data, printf
// templates whose whitespace STRINGIFY collapses) and rauc-hawkbit-updater
// (src/hawkbit-client.c json_build_status: string id, UTC time).
var recorded = map[string]string{
	"swu-proceeding":   `{ "id": 1234567, "time": "20261202T083000", "status": { "result": { "progress": { "cnt" : 0, "of" : 1 }, "finished": "none" }, "execution": "proceeding", "details" : [ "Installing Update Chunk Artifacts." ] } }`,
	"swu-no-details":   `{ "id": 1234567, "time": "20261202T083000", "status": { "result": { "progress": { "cnt" : 1, "of" : 1 }, "finished": "none" }, "execution": "proceeding", "details" : [   ] } }`,
	"swu-log-tab":      "{ \"id\": 1234567, \"time\": \"20261202T083000\", \"status\": { \"result\": { \"progress\": { \"cnt\" : 0, \"of\" : 1 }, \"finished\": \"failure\" }, \"execution\": \"closed\", \"details\" : [ \"ERROR handler\tfailed\",\"ERROR Installation failed !\" ] } }",
	"swu-success":      `{ "id": 1234567, "time": "20261202T083000", "status": { "result": { "progress": { "cnt" : 0, "of" : 0 }, "finished": "success" }, "execution": "closed", "details" : [ "Update succeeded" ] } }`,
	"swu-cancel-ack":   `{ "id": 1234567, "time": "20261202T083000", "status": { "result": { "finished": "success" }, "execution": "closed", "details" : [ "cancellation acknowledged." ] } }`,
	"swu-configdata":   `{ "id": "", "time": "20261202T083000", "status": { "result": { "finished": "success" }, "execution": "closed", "details" : [ "" ] }, "data" : {  "version": "1.0.0","label.site": "berlin" } }`,
	"rhu-progress":     `{"id":"1234567","time":"20261202T083000","status":{"result":{"finished":"none"},"execution":"proceeding","details":["Download complete. 2.00 MB/s"]}}`,
	"rhu-success":      `{"id":"1234567","time":"20261202T083000","status":{"result":{"finished":"success"},"execution":"closed","details":["Software bundle installed successfully."]}}`,
	"rhu-failure":      `{"id":"1234567","time":"20261202T083000","status":{"result":{"finished":"failure"},"execution":"closed","details":["Failed to install software bundle."]}}`,
	"rhu-downloaded":   `{"id":"1234567","time":"20261202T083000","status":{"result":{"finished":"success"},"execution":"downloaded","details":["File checksum OK."]}}`,
	"rhu-cancel-ok":    `{"id":"1234567","time":"20261202T083000","status":{"result":{"finished":"success"},"execution":"closed","details":["Action canceled."]}}`,
	"rhu-cancel-no":    `{"id":"1234567","time":"20261202T083000","status":{"result":{"finished":"success"},"execution":"rejected","details":["Cancelation impossible, installation in progress"]}}`,
	"rhu-configdata":   `{"time":"20261202T083000","status":{"result":{"finished":"success"},"execution":"closed"},"data":{"version":"1.0.0","hw":"imx8"}}`,
	"hawkbit-canceled": `{"id":1234567,"status":{"execution":"canceled","result":{"finished":"success"}}}`,
}

func TestMapDeploymentRecorded(t *testing.T) {
	cases := []struct {
		body   string
		effect Effect
		state  rollout.State
		reason string
	}{
		{"swu-proceeding", ReportState, rollout.StateDownloading, ""},
		{"swu-no-details", ReportState, rollout.StateDownloading, ""},
		{"swu-log-tab", ReportState, rollout.StateFailed, "ddi: ERROR handler failed; ERROR Installation failed !"},
		{"swu-success", Succeed, "", ""},
		{"rhu-progress", ReportState, rollout.StateDownloading, ""},
		{"rhu-success", Succeed, "", ""},
		{"rhu-failure", ReportState, rollout.StateFailed, "ddi: Failed to install software bundle."},
		{"rhu-downloaded", ReportState, rollout.StateDownloaded, ""},
		{"hawkbit-canceled", ReportState, rollout.StateFailed, "ddi: the client canceled the update"},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			f, err := ParseFeedback([]byte(recorded[c.body]))
			if err != nil {
				t.Fatal(err)
			}
			m := MapDeployment(f)
			if m.Effect != c.effect || m.State != c.state || m.Reason != c.reason {
				t.Fatalf("got %+v, want effect %v state %q reason %q", m, c.effect, c.state, c.reason)
			}
		})
	}
}

func TestMapCancelRecorded(t *testing.T) {
	for body, want := range map[string]Effect{"swu-cancel-ack": AckCancel, "rhu-cancel-ok": AckCancel, "rhu-cancel-no": RejectCancel, "rhu-progress": Ignore, "rhu-failure": RejectCancel} {
		f, err := ParseFeedback([]byte(recorded[body]))
		if err != nil {
			t.Fatal(err)
		}
		if got := MapCancel(f).Effect; got != want {
			t.Errorf("%s: effect %v, want %v", body, got, want)
		}
	}
}

func TestParseConfigDataRecorded(t *testing.T) {
	for _, body := range []string{"swu-configdata", "rhu-configdata"} {
		c, err := ParseConfigData([]byte(recorded[body]))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if c.Data["version"] != "1.0.0" || c.Mode != "merge" {
			t.Fatalf("%s: got %+v", body, c)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, b := range []string{``, `{`, `[]`, `{"status":{"execution":"done"}}`, `{"status":{"execution":"closed","result":{"finished":"maybe"}}}`, `{"status":{}}`} {
		if _, err := ParseFeedback([]byte(b)); err == nil {
			t.Errorf("feedback %q accepted", b)
		}
	}
	for _, b := range []string{``, `{"data":{"a":1}}`, `{"data":{},"mode":"append"}`} {
		if _, err := ParseConfigData([]byte(b)); err == nil {
			t.Errorf("configData %q accepted", b)
		}
	}
}

func TestFormatSleep(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "00:00:01", 30 * time.Second: "00:00:30", 5 * time.Minute: "00:05:00", 90 * time.Minute: "01:30:00",
		1500 * time.Millisecond: "00:00:01", 48 * time.Hour: "23:59:59",
	} {
		if got := FormatSleep(d); got != want {
			t.Errorf("FormatSleep(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestParseActionID(t *testing.T) {
	for s, want := range map[string]uint32{"1": 1, "2147483647": 2147483647, "42": 42} {
		if got, err := parseActionID(s); err != nil || got != want {
			t.Errorf("parseActionID(%q) = %d, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "0", "-1", "01", "2147483648", "1e3", " 1", "abc", "99999999999"} {
		if _, err := parseActionID(s); err == nil {
			t.Errorf("parseActionID(%q) accepted", s)
		}
	}
}

func TestParsePath(t *testing.T) {
	cases := map[string]struct {
		ok         bool
		tenant, id string
		rest       string
	}{
		"/fleet/controller/v1/dev-1":                                    {true, "fleet", "dev-1", ""},
		"//fleet/controller/v1/dev-1/":                                  {true, "fleet", "dev-1", ""},
		"/fleet/controller/v1/dev-1/deploymentBase/7/feedback":          {true, "fleet", "dev-1", "deploymentBase/7/feedback"},
		"/fleet/controller/v1/dev-1/softwaremodules/7/artifacts/fw.swu": {true, "fleet", "dev-1", "softwaremodules/7/artifacts/fw.swu"},
		"/v1/update":                 {false, "", "", ""},
		"/fleet/controller/v2/dev-1": {false, "", "", ""},
		"/fleet/controller/v1":       {false, "", "", ""},
	}
	for p, want := range cases {
		got, ok := parsePath(p)
		if ok != want.ok || got.tenant != want.tenant || got.controller != want.id || strings.Join(got.rest, "/") != want.rest {
			t.Errorf("parsePath(%q) = %+v %v, want %+v", p, got, ok, want)
		}
	}
}

func TestActionIDs(t *testing.T) {
	seen := map[uint32]string{}
	for i := range 2000 {
		uid := "uid-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + itoa(i)
		for _, k := range []Kind{KindInstall, KindRollback} {
			id := ActionID(uid, k)
			if id == 0 || id > 1<<31-1 {
				t.Fatalf("ActionID out of range: %d", id)
			}
			if id != ActionID(uid, k) {
				t.Fatal("ActionID not stable")
			}
			seen[id] = uid
		}
	}
	if len(seen) < 3990 {
		t.Fatalf("%d distinct ids of 4000", len(seen))
	}
	recs := []devicestore.Record{{RolloutUID: "a"}, {RolloutUID: "b", RollbackRelease: "ns/old"}}
	if rec, k, ok := actionOf(recs, ActionID("b", KindRollback)); !ok || rec.RolloutUID != "b" || k != KindRollback {
		t.Fatalf("actionOf rollback: %v %v %v", rec, k, ok)
	}
	if _, _, ok := actionOf(recs, ActionID("b", KindInstall)); ok {
		t.Fatal("an install id of a record now rolling back matched")
	}
	clash := []devicestore.Record{{RolloutUID: "a"}, {RolloutUID: "a"}}
	if _, _, ok := actionOf(clash, ActionID("a", KindInstall)); ok {
		t.Fatal("a clash was served")
	}
}

func itoa(i int) string { return idString(uint32(i)) }

func TestReasonBounded(t *testing.T) {
	f := Feedback{}
	f.Status.Details = []string{strings.Repeat("é", 400), "\x01bad"}
	r := reason(f, "x")
	if len(r) > maxReason || !strings.HasPrefix(r, "ddi: ") || strings.ContainsRune(r, '\uFFFD') {
		t.Fatalf("reason %q (%d bytes)", r, len(r))
	}
}

func TestApplyLabels(t *testing.T) {
	cur := map[string]string{"site": "a", "tier": "x"}
	enr := map[string]string{"fleet": "lab"}
	got, dropped := applyLabels(cur, enr, ConfigData{Mode: "merge", Data: map[string]string{"label.site": "b", "label.bad key": "v", "label.fleet": "escape", "version": "1.0.0"}})
	want := map[string]string{"site": "b", "tier": "x", "fleet": "lab"}
	if len(got) != len(want) || got["site"] != "b" || got["fleet"] != "lab" || got["tier"] != "x" || len(dropped) != 1 {
		t.Fatalf("merge: %v dropped %v", got, dropped)
	}
	got, _ = applyLabels(cur, enr, ConfigData{Mode: "replace", Data: map[string]string{"label.zone": "z"}})
	if len(got) != 2 || got["zone"] != "z" || got["fleet"] != "lab" {
		t.Fatalf("replace: %v", got)
	}
	got, _ = applyLabels(cur, enr, ConfigData{Mode: "remove", Data: map[string]string{"label.tier": ""}})
	if _, ok := got["tier"]; ok || got["site"] != "a" {
		t.Fatalf("remove: %v", got)
	}
}

func FuzzParseFeedback(f *testing.F) {
	for _, b := range recorded {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fb, err := ParseFeedback(b)
		if err != nil {
			return
		}
		if !execs[fb.Status.Execution] || !results[fb.Status.Result.Finished] {
			t.Fatalf("accepted %+v", fb)
		}
		m := MapDeployment(fb)
		if m.Effect == ReportState && !m.State.Valid() {
			t.Fatalf("invalid state %q", m.State)
		}
		if len(m.Reason) > maxReason {
			t.Fatalf("reason too long")
		}
	})
}

func FuzzParseConfigData(f *testing.F) {
	for _, b := range recorded {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfigData(b)
		if err != nil {
			return
		}
		labels, _ := applyLabels(nil, nil, c)
		for k := range labels {
			if k == "" {
				t.Fatal("empty label key")
			}
		}
	})
}

func FuzzParsePath(f *testing.F) {
	f.Add("/fleet/controller/v1/dev-1/deploymentBase/7/feedback")
	f.Add("//a//controller/v1/x/")
	f.Fuzz(func(t *testing.T, p string) {
		got, ok := parsePath(p)
		if ok && (got.tenant == "" || got.controller == "" || strings.Contains(got.controller, "/")) {
			t.Fatalf("parsePath(%q) = %+v", p, got)
		}
	})
}
