package mender_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/otaflow/otaflow/otaserver/mender"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

func FuzzParseAuthRequest(f *testing.F) {
	f.Add([]byte(`{"id_data":"{\"mac\":\"02:00:00:00:00:01\"}","tenant_token":"tt","pubkey":"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"}` + "\n"))
	f.Add([]byte(`{"id_data":"[]","pubkey":"x"}`))
	f.Add([]byte(`{"id_data":"null","pubkey":"x"}`))
	f.Add([]byte(`{"id_data":"{}"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := mender.ParseAuthRequest(body)
		if err != nil {
			return
		}
		var id map[string]any
		if a.IDData == "" || len(a.IDData) > mender.MaxIDDataBytes || json.Unmarshal([]byte(a.IDData), &id) != nil || id == nil || a.Pubkey == "" {
			t.Fatalf("accepted %+v", a)
		}
	})
}

func FuzzParseNext(f *testing.F) {
	f.Add(true, "POST", "", []byte(`{"device_provides":{"artifact_name":"release-1","device_type":"sensor-v1"},"update_control_map":false}`))
	f.Add(false, "POST", "", []byte(`{"artifact_name":"release-1","device_type":"sensor-v1","rootfs-image.version":"1"}`))
	f.Add(false, "GET", "artifact_name=release-1&device_type=sensor-v1", []byte(nil))
	f.Add(false, "GET", "artifact_name=%ff&device_type=x", []byte(nil))
	f.Add(true, "POST", "", []byte(`{"device_provides":null}`))
	f.Fuzz(func(t *testing.T, v2 bool, method, query string, body []byte) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		p, err := mender.ParseNext(v2, method, q, body)
		if err != nil {
			return
		}
		name := p["artifact_name"]
		if name == "" || len(name) > mender.MaxArtifactName || p["device_type"] == "" || len(p) > mender.MaxProvides {
			t.Fatalf("accepted %v", p)
		}
		for k, v := range p {
			if !utf8.ValidString(k) || !utf8.ValidString(v) || len(k)+len(v) > 1024 {
				t.Fatalf("accepted provide %q=%q", k, v)
			}
		}
	})
}

func FuzzParseInventory(f *testing.F) {
	f.Add([]byte(`[{"name":"device_type","value":"sensor-v1"},{"name":"ipv4","value":["10.0.0.2/24"]}]`))
	f.Add([]byte(`[{"name":"","value":"x"}]`))
	f.Add([]byte(`[{"name":"a b","value":"c:d"},{"name":"artifact_name","value":"r"}]`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		attrs, err := mender.ParseInventory(body)
		if err != nil {
			return
		}
		if len(attrs) > mender.MaxInventoryAttributes {
			t.Fatalf("%d attributes", len(attrs))
		}
		for name := range attrs {
			if name == "" {
				t.Fatal("an attribute without a name")
			}
		}
		// Whatever the upload, the labels stay valid and bounded.
		labels, _ := mender.InventoryLabels(map[string]string{"region": "eu"}, map[string]string{"region": "eu"}, attrs, true)
		if len(labels) > protov1.MaxLabels || labels["region"] != "eu" {
			t.Fatalf("labels %v", labels)
		}
		for k := range labels {
			if k != "region" && !strings.HasPrefix(k, mender.LabelPrefix) {
				t.Fatalf("label %q", k)
			}
		}
	})
}

func FuzzParseLog(f *testing.F) {
	f.Add([]byte(`{"messages":[{"timestamp":"2026-01-02T03:04:05Z","level":"error","message":"boom"}]}`))
	f.Add([]byte(`{"messages":[{"level":"info","message":"a\nb"},{"level":"info","message":"\u20ac\u20ac"}]}`))
	f.Add([]byte(`{"messages":[{"level":"ERROR","message":"` + strings.Repeat("é", 300) + `"}]}`))
	f.Add([]byte(`{"messages":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := mender.ParseLog(body)
		if err != nil {
			return
		}
		if len(l.Messages) == 0 {
			t.Fatal("accepted a log without messages")
		}
		checkReason(t, mender.FailureReason(l))
	})
}

// FuzzVerifyToken: no string verifies as a device token or a download
// link but one the keys issued (base64's unused trailing bits aside, the
// signed part and the claims are the issued ones).
func FuzzVerifyToken(f *testing.F) {
	keys := mender.NewTokenKeys()
	if err := keys.Replace(map[string][]byte{"k1": []byte(strings.Repeat("k", 32))}); err != nil {
		f.Fatal(err)
	}
	now := at(t0)
	dev, err := keys.IssueDevice("mender-1", "fleet", t0, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	link, err := keys.IssueLink(mender.Link{DeviceID: "mender-1", Deployment: "dep", Blob: "blob", Expires: t0.Add(time.Hour)}, t0)
	if err != nil {
		f.Fatal(err)
	}
	signed := func(tok string) string { return tok[:strings.LastIndex(tok, ".")] }
	f.Add(dev)
	f.Add(link)
	f.Add(signed(dev) + ".")
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		if id, ten, err := keys.VerifyDevice(tok, now); err == nil {
			if !strings.Contains(tok, ".") || signed(tok) != signed(dev) || id != "mender-1" || ten != "fleet" {
				t.Fatalf("%q verified as a device token of %q in %q", tok, id, ten)
			}
		}
		if l, err := keys.VerifyLink(tok, now); err == nil {
			if !strings.Contains(tok, ".") || signed(tok) != signed(link) || l.DeviceID != "mender-1" || l.Deployment != "dep" || l.Blob != "blob" {
				t.Fatalf("%q verified as a link %+v", tok, l)
			}
		}
	})
}
