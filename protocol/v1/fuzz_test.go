package v1

import (
	"net/url"
	"slices"
	"testing"

	"github.com/otaflow/otaflow/protocol/v1/strictjson"
)

// The fuzz targets check that no input makes the request parsers panic,
// and that whatever they accept is valid.

func FuzzEnrollRequest(f *testing.F) {
	f.Add([]byte(`{"deviceID":"dev-1","bootstrapToken":"t","kem":"x25519","publicKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","deviceType":"sensor-v1","version":"1.0.0","securityFloor":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req EnrollRequest
		if err := unmarshalStrict(body, &req); err != nil {
			return
		}
		if _, err := req.Validate(); err != nil {
			return
		}
		if validID(req.DeviceID, MaxIDLen) != nil || validVersion(req.Version) != nil || validLabels(req.Labels) != nil {
			t.Fatalf("accepted invalid request %+v", req)
		}
	})
}

func FuzzStatusReport(f *testing.F) {
	f.Add([]byte(`{"reportID":"r-1","rollout":"ns/ro","state":"downloading","progress":50}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var rep StatusReport
		if err := unmarshalStrict(body, &rep); err != nil {
			return
		}
		if err := rep.Validate(); err != nil {
			return
		}
		if !slices.Contains(Reportable, rep.State) || (rep.Progress != nil && (*rep.Progress < 0 || *rep.Progress > 100)) || !printable(rep.Reason) {
			t.Fatalf("accepted invalid report %+v", rep)
		}
	})
}

func FuzzUpdateQuery(f *testing.F) {
	f.Add("version=1.0.0&securityFloor=3&nonce=00112233445566778899aabbccddeeff")
	f.Add("version=1.0.0&securityFloor=3&boot=0f1e2d3c4b5a6978")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		c, err := ParseCheckIn(q)
		if err != nil {
			return
		}
		if validVersion(c.Version) != nil || c.SecurityFloor < 0 || (c.Nonce != "" && validNonce(c.Nonce) != nil) || (c.Boot != "" && validBoot(c.Boot) != nil) {
			t.Fatalf("accepted invalid check-in %+v", c)
		}
	})
}

// unmarshalStrict decodes as the OTA server does.
func unmarshalStrict(body []byte, v any) error { return strictjson.Unmarshal(body, v) }
