package tokenseal

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
)

// The fuzz targets hold the opener of untrusted enrollment answers to: no
// panic, and whatever opens is a bearer token bound to the device ID and
// server key ID it was opened for. Their seeds are the committed vectors.

func FuzzOpen(f *testing.F) {
	vs := readVectors(f)
	for i, v := range vs {
		_, _, sealed := v.parse(f)
		f.Add(byte(i), sealed, v.ServerKeyID, v.DeviceID)
		f.Add(byte(i), sealed[:len(sealed)-1], v.ServerKeyID, v.DeviceID)
		f.Add(byte(i), sealed, v.ServerKeyID, v.DeviceID+"0")
		f.Add(byte(i), sealed[:40], "", "")
	}
	f.Fuzz(func(t *testing.T, which byte, sealed []byte, kid, device string) {
		v := vs[int(which)%len(vs)]
		kem, priv, _ := v.parse(t)
		tok, err := Open(kem, priv, sealed, kid, device)
		if err != nil {
			if !errors.Is(err, ErrOpen) || tok != "" {
				t.Fatalf("Open = %q, %v", tok, err)
			}
			return
		}
		if !ValidToken(tok) {
			t.Fatalf("opened to %q, not a bearer token", tok)
		}
		if _, err := Open(kem, priv, sealed, kid, device+"x"); !errors.Is(err, ErrOpen) {
			t.Fatalf("opens for device %q too: %v", device+"x", err)
		}
	})
}

func FuzzOpenResponse(f *testing.F) {
	vs := readVectors(f)
	for i, v := range vs {
		_, _, sealed := v.parse(f)
		b, _ := json.Marshal(protov1.EnrollResponse{DeviceID: v.DeviceID, SealedToken: base64.StdEncoding.EncodeToString(sealed), AssignmentKeyID: v.ServerKeyID})
		f.Add(byte(i), b)
		f.Add(byte(i), []byte(`{"deviceID":"`+v.DeviceID+`","token":"`+v.Token+`","assignmentKeyID":"`+v.ServerKeyID+`"}`))
	}
	f.Add(byte(0), []byte(`{"sealedToken":"===="}`))
	f.Fuzz(func(t *testing.T, which byte, body []byte) {
		v := vs[int(which)%len(vs)]
		kem, priv, _ := v.parse(t)
		var r protov1.EnrollResponse
		if json.Unmarshal(body, &r) != nil {
			return
		}
		tok, err := OpenResponse(kem, priv, v.DeviceID, r)
		if err != nil {
			if !errors.Is(err, ErrOpen) || tok != "" {
				t.Fatalf("OpenResponse = %q, %v", tok, err)
			}
			return
		}
		if !ValidToken(tok) || r.DeviceID != v.DeviceID || r.LegacyToken != "" {
			t.Fatalf("accepted %+v as %q", r, tok)
		}
		if _, err := keywrap.ParseKEM(string(kem)); err != nil {
			t.Fatal(err)
		}
	})
}
