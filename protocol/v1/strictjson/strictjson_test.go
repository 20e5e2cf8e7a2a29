package strictjson

import (
	"encoding/json"
	"strings"
	"testing"
)

type body struct {
	DeviceID string            `json:"deviceID"`
	Floor    int64             `json:"securityFloor"`
	Labels   map[string]string `json:"labels,omitempty"`
	Progress *int              `json:"progress,omitempty"`
}

func TestUnmarshal(t *testing.T) {
	cases := []struct{ in, err string }{
		{`{"deviceID":"d","securityFloor":3}`, ""},
		{`{"deviceID":"d","labels":{"Region":"eu"}}`, ""},
		{` {"deviceID":"d"} `, ""},
		{`{}`, ""},
		{`{"DeviceID":"d"}`, `unknown field "DeviceID"`},
		{`{"deviceid":"d"}`, `unknown field "deviceid"`},
		{`{"deviceID":"d","deviceID":"e"}`, `duplicate field "deviceID"`},
		{`{"deviceID":null}`, `field "deviceID" is null`},
		{`{"labels":null}`, `field "labels" is null`},
		{`{"deviceID":"d"} {}`, "data after the JSON object"},
		{`{"deviceID":"d"}x`, "data after the JSON object"},
		{`["deviceID"]`, "not a JSON object"},
		{`{"deviceID":1}`, "cannot unmarshal number"},
		{`{"other":1}`, `unknown field "other"`},
		{``, "EOF"},
		{`{"deviceID":"d"`, "EOF"},
	}
	for _, tc := range cases {
		var b body
		err := Unmarshal([]byte(tc.in), &b)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want %q", tc.in, err, tc.err)
		}
	}
	if err := Unmarshal([]byte(`{}`), body{}); err == nil {
		t.Error("a non-pointer was accepted")
	}
}

// FuzzUnmarshal: whatever is accepted is one JSON object whose keys are
// all exact struct names, none null.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{`{"deviceID":"d","securityFloor":3}`, `{"DeviceID":"d"}`, `{"deviceID":"d","deviceID":"e"}`, `{"labels":null}`, `{"progress":5}`} {
		f.Add([]byte(s))
	}
	names := map[string]bool{"deviceID": true, "securityFloor": true, "labels": true, "progress": true}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b body
		if Unmarshal(data, &b) != nil {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", data, err)
		}
		for k, v := range m {
			if !names[k] || string(v) == "null" {
				t.Fatalf("accepted %q: key %q value %s", data, k, v)
			}
		}
	})
}
