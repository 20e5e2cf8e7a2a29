package conformance

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otaflow/otaflow/internal/blobstore"
	"github.com/otaflow/otaflow/internal/devicestore/sqlite"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/strictjson"
	"github.com/otaflow/otaflow/protocol/v1/tokenseal"
)

const (
	enrollFile     = "4-enroll.json"
	bootstrapToken = "factory-token-2026-0123456789abcdef"
	tokenPattern   = "^[A-Za-z0-9_-]{43}$"
)

var enrollClasses = []class{
	{Accept, "201 Created (new device) or 200 OK (known device, same key: token rotated) with {deviceID, sealedToken, assignmentKeyID}"},
	{"bad_request", "400: a field is invalid; the error message starts with the field's name (field)"},
	{"malformed_json", "400: the body is not one JSON object with known fields of the right types only"},
	{"bad_bootstrap_token", "401: the bootstrap token is not valid"},
	{"key_mismatch", "409: the device ID is enrolled with another KEM or public key"},
}

type enrollDoc struct {
	fileHeader
	BootstrapToken  string `json:"bootstrapToken"`
	AssignmentKeyID string `json:"assignmentKeyID"`
	TokenPattern    string `json:"tokenPattern"`
	// SealedTokenSizes are the sizes of a sealed 43-character token per
	// KEM, decoded.
	SealedTokenSizes map[string]int `json:"sealedTokenSizes"`
	Vectors          []enrollVector `json:"vectors"`
}

type enrollVector struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Expect      string `json:"expect"`
	Status      int    `json:"status"`
	Field       string `json:"field,omitempty"`
	// Before are requests sent (and accepted) first, on the same server.
	Before []json.RawMessage `json:"before,omitempty"`
	// Request is the body as a JSON object; RawBody is the exact body
	// when it is not one JSON object.
	Request  json.RawMessage         `json:"request,omitempty"`
	RawBody  *string                 `json:"rawBody,omitempty"`
	Response *protov1.EnrollResponse `json:"response,omitempty"`
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// x25519Hex builds a 32-byte little-endian u-coordinate: first byte, 30
// middle bytes, last byte.
func x25519Bytes(first, middle, last byte) []byte {
	b := bytes.Repeat([]byte{middle}, 32)
	b[0], b[31] = first, last
	return b
}

func genEnroll(t *testing.T) any {
	kw := readKeywrapVectors(t)
	xPub, pPub := mustHex(t, "x25519 publicKey", kw["x25519"].PublicKey), mustHex(t, "p256 publicKey", kw["p256"].PublicKey)
	keys := serverKeys(t)
	doc := enrollDoc{
		fileHeader: header("otaflow-conformance/v1 enroll", "docs/protocol.md \"POST /v1/enroll\"",
			"POST /v1/enroll with Content-Type: application/json and the body request (serialized as JSON) or rawBody, to a server whose bootstrap token is bootstrapToken, after the requests of before. The server's answer must be status and, for refusals, the error code expect; an accepted answer is like response plus sealedToken (standard base64 of sealedTokenSizes[kem] bytes, random) and no token field: sealedToken opens as in 5-sealed-token.json, with the private key of 2-unwrap.json's device key for the request's publicKey, to a fresh token matching tokenPattern.",
			enrollClasses...),
		BootstrapToken:  bootstrapToken,
		AssignmentKeyID: keys["ed25519"].info.KeyID,
		TokenPattern:    tokenPattern,
		SealedTokenSizes: map[string]int{
			"x25519": tokenseal.SealedSize(keywrap.X25519, 43),
			"p256":   tokenseal.SealedSize(keywrap.P256, 43),
		},
	}
	base := func() protov1.EnrollRequest {
		return protov1.EnrollRequest{DeviceID: kw["x25519"].DeviceID, BootstrapToken: bootstrapToken, KEM: "x25519", PublicKey: b64(xPub),
			DeviceType: "sensor-v1", Labels: map[string]string{"region": "eu", "site": "plant-7"}, Version: "2.0.3", SecurityFloor: 4}
	}
	marshal := func(r protov1.EnrollRequest) []byte {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	asP256 := func(r *protov1.EnrollRequest) { r.KEM, r.PublicKey = "p256", b64(pPub) }
	type ecase struct {
		name, desc, expect, field string
		mod                       func(r *protov1.EnrollRequest)
		raw                       func(b []byte) []byte // edits the serialized request
		rawBody                   bool                  // the edited body is not one JSON object
		before                    []protov1.EnrollRequest
	}
	status := map[string]int{"bad_request": 400, "malformed_json": 400, "bad_bootstrap_token": 401, "key_mismatch": 409}
	// A device key whose standard base64 has '+' or '/', for the base64url case.
	var urlKey []byte
	for i := 0; urlKey == nil; i++ {
		k, err := ecdh.X25519().NewPrivateKey(label(fmt.Sprint("base64url device key ", i)))
		if err != nil {
			t.Fatal(err)
		}
		if s := b64(k.PublicKey().Bytes()); strings.ContainsAny(s, "+/") {
			urlKey = k.PublicKey().Bytes()
		}
	}
	otherKey := otherDeviceKey(t, "x25519").PublicKey().Bytes()
	manyLabels := func(n int) map[string]string {
		m := map[string]string{"example.com/site": "plant-7"}
		for i := 1; len(m) < n; i++ {
			m[fmt.Sprintf("label-%02d", i)] = fmt.Sprintf("value-%02d", i)
		}
		return m
	}
	set := func(f func(r *protov1.EnrollRequest)) func(r *protov1.EnrollRequest) { return f }
	key := func(kem string, k []byte) func(r *protov1.EnrollRequest) {
		return func(r *protov1.EnrollRequest) { r.KEM, r.PublicKey = kem, b64(k) }
	}
	offCurve := flip(pPub, 64, 0x01)
	cases := []ecase{
		// Accepted.
		{name: "x25519", desc: "new device with an X25519 key (32 bytes, standard base64)", expect: Accept},
		{name: "p256", desc: "new device with a P-256 key (65-byte uncompressed point 0x04 ‖ X ‖ Y)", expect: Accept, mod: asP256},
		{name: "minimal", desc: "no labels, securityFloor 0", expect: Accept, mod: set(func(r *protov1.EnrollRequest) { r.Labels, r.SecurityFloor = nil, 0 })},
		{name: "re-enroll", desc: "the same device ID and key again: 200, the token is rotated", expect: Accept, before: []protov1.EnrollRequest{base()}},
		{name: "device-id-max", desc: "a 128-character device ID using every allowed punctuation character", expect: Accept,
			mod: set(func(r *protov1.EnrollRequest) { r.DeviceID = "Sensor_0042.eu:plant-7" + strings.Repeat("x", 128-22) })},
		{name: "security-floor-max", desc: "securityFloor 4294967295", expect: Accept, mod: set(func(r *protov1.EnrollRequest) { r.SecurityFloor = 1<<32 - 1 })},
		{name: "version-not-semver", desc: "version build-2026.03: accepted (such a device is never offered an update)", expect: Accept,
			mod: set(func(r *protov1.EnrollRequest) { r.Version = "build-2026.03" })},
		{name: "labels-max", desc: "32 labels, one with a prefixed key", expect: Accept, mod: set(func(r *protov1.EnrollRequest) { r.Labels = manyLabels(32) })},

		// deviceID.
		{name: "device-id-empty", desc: "deviceID empty", expect: "bad_request", field: "deviceID", mod: set(func(r *protov1.EnrollRequest) { r.DeviceID = "" })},
		{name: "device-id-too-long", desc: "deviceID of 129 characters", expect: "bad_request", field: "deviceID", mod: set(func(r *protov1.EnrollRequest) { r.DeviceID = strings.Repeat("d", 129) })},
		{name: "device-id-space", desc: "deviceID with a space", expect: "bad_request", field: "deviceID", mod: set(func(r *protov1.EnrollRequest) { r.DeviceID = "sensor 42" })},
		{name: "device-id-slash", desc: "deviceID with a slash", expect: "bad_request", field: "deviceID", mod: set(func(r *protov1.EnrollRequest) { r.DeviceID = "fleet/sensor-42" })},
		{name: "device-id-non-ascii", desc: "deviceID with a non-ASCII letter", expect: "bad_request", field: "deviceID", mod: set(func(r *protov1.EnrollRequest) { r.DeviceID = "sensör-42" })},
		// bootstrapToken.
		// The token is checked before any other field, so a request
		// without a valid one is 401 whatever else it carries.
		{name: "bootstrap-token-empty", desc: "bootstrapToken empty: not valid", expect: "bad_bootstrap_token", mod: set(func(r *protov1.EnrollRequest) { r.BootstrapToken = "" })},
		{name: "bootstrap-token-too-long", desc: "bootstrapToken of 513 characters: not valid", expect: "bad_bootstrap_token", mod: set(func(r *protov1.EnrollRequest) { r.BootstrapToken = strings.Repeat("t", 513) })},
		{name: "bootstrap-token-wrong", desc: "a bootstrap token the server does not hold", expect: "bad_bootstrap_token", mod: set(func(r *protov1.EnrollRequest) { r.BootstrapToken = "factory-token-2025-0123456789abcdef" })},
		{name: "bootstrap-token-short", desc: "the server's token cut to 31 characters: tokens are at least 32 bytes", expect: "bad_bootstrap_token", mod: set(func(r *protov1.EnrollRequest) { r.BootstrapToken = bootstrapToken[:31] })},
		{name: "bootstrap-token-first", desc: "a wrong bootstrap token and an invalid kem: the token is checked first", expect: "bad_bootstrap_token", mod: set(func(r *protov1.EnrollRequest) {
			r.BootstrapToken = "factory-token-2025-0123456789abcdef"
			r.KEM = "ed25519"
		})},
		// kem.
		{name: "kem-uppercase", desc: "kem X25519: names are lowercase", expect: "bad_request", field: "kem", mod: set(func(r *protov1.EnrollRequest) { r.KEM = "X25519" })},
		{name: "kem-unknown", desc: "kem ed25519", expect: "bad_request", field: "kem", mod: set(func(r *protov1.EnrollRequest) { r.KEM = "ed25519" })},
		{name: "kem-missing", desc: "no kem field", expect: "bad_request", field: "kem", raw: func(b []byte) []byte { return edit(t, b, "kem", "", true) }},
		// publicKey encoding.
		{name: "public-key-base64url", desc: "publicKey in the URL-safe base64 alphabet (- and _)", expect: "bad_request", field: "publicKey",
			mod: set(func(r *protov1.EnrollRequest) { r.PublicKey = base64.URLEncoding.EncodeToString(urlKey) })},
		{name: "public-key-unpadded", desc: "publicKey without its = padding", expect: "bad_request", field: "publicKey",
			mod: set(func(r *protov1.EnrollRequest) { r.PublicKey = base64.RawStdEncoding.EncodeToString(xPub) })},
		{name: "public-key-hex", desc: "publicKey in hex: decodes as base64 to 48 bytes", expect: "bad_request", field: "publicKey",
			mod: set(func(r *protov1.EnrollRequest) { r.PublicKey = hex.EncodeToString(xPub) })},
		{name: "public-key-missing", desc: "no publicKey field", expect: "bad_request", field: "publicKey", raw: func(b []byte) []byte { return edit(t, b, "publicKey", "", true) }},
		// X25519 keys.
		{name: "x25519-31-bytes", desc: "X25519 key of 31 bytes", expect: "bad_request", field: "publicKey", mod: key("x25519", xPub[:31])},
		{name: "x25519-33-bytes", desc: "X25519 key of 33 bytes", expect: "bad_request", field: "publicKey", mod: key("x25519", cat(xPub, []byte{0}))},
		{name: "x25519-small-order-0", desc: "small-order X25519 point u = 0", expect: "bad_request", field: "publicKey", mod: key("x25519", make([]byte, 32))},
		{name: "x25519-small-order-1", desc: "small-order X25519 point u = 1", expect: "bad_request", field: "publicKey", mod: key("x25519", x25519Bytes(1, 0, 0))},
		{name: "x25519-small-order-8a", desc: "small-order X25519 point of order 8 (e0eb7a7c…)", expect: "bad_request", field: "publicKey",
			mod: key("x25519", mustHex(t, "point", "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"))},
		{name: "x25519-small-order-8b", desc: "small-order X25519 point of order 8 (5f9c95bc…)", expect: "bad_request", field: "publicKey",
			mod: key("x25519", mustHex(t, "point", "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"))},
		{name: "x25519-small-order-p-1", desc: "small-order X25519 point u = p − 1 = 2^255 − 20", expect: "bad_request", field: "publicKey", mod: key("x25519", x25519Bytes(0xec, 0xff, 0x7f))},
		{name: "x25519-non-canonical-p", desc: "X25519 u = p = 2^255 − 19, a non-canonical encoding of 0", expect: "bad_request", field: "publicKey", mod: key("x25519", x25519Bytes(0xed, 0xff, 0x7f))},
		{name: "x25519-non-canonical-p+1", desc: "X25519 u = p + 1, a non-canonical encoding of 1", expect: "bad_request", field: "publicKey", mod: key("x25519", x25519Bytes(0xee, 0xff, 0x7f))},
		{name: "x25519-top-bit-set", desc: "the valid key with the top bit of its last byte set", expect: "bad_request", field: "publicKey", mod: key("x25519", flip(xPub, 31, 0x80))},
		// P-256 keys.
		{name: "p256-compressed", desc: "P-256 key as a 33-byte compressed point (0x02 or 0x03 ‖ X)", expect: "bad_request", field: "publicKey",
			mod: key("p256", cat([]byte{2 + pPub[64]&1}, pPub[1:33]))},
		{name: "p256-off-curve", desc: "P-256 key whose Y coordinate's last bit is flipped: not on the curve", expect: "bad_request", field: "publicKey", mod: key("p256", offCurve)},
		{name: "p256-hybrid-prefix", desc: "P-256 key with the hybrid prefix 0x06/0x07 instead of 0x04", expect: "bad_request", field: "publicKey",
			mod: key("p256", cat([]byte{6 + pPub[64]&1}, pPub[1:]))},
		{name: "p256-raw-xy", desc: "P-256 key as 64 bytes X ‖ Y without the 0x04 prefix", expect: "bad_request", field: "publicKey", mod: key("p256", pPub[1:])},
		{name: "p256-infinity", desc: "P-256 point at infinity (the single byte 0x00)", expect: "bad_request", field: "publicKey", mod: key("p256", []byte{0})},
		{name: "x25519-key-as-p256", desc: "kem p256 with a 32-byte X25519 key", expect: "bad_request", field: "publicKey", mod: key("p256", xPub)},
		{name: "p256-key-as-x25519", desc: "kem x25519 with a 65-byte P-256 key", expect: "bad_request", field: "publicKey", mod: key("x25519", pPub)},
		// deviceType.
		{name: "device-type-empty", desc: "deviceType empty", expect: "bad_request", field: "deviceType", mod: set(func(r *protov1.EnrollRequest) { r.DeviceType = "" })},
		{name: "device-type-too-long", desc: "deviceType of 64 characters", expect: "bad_request", field: "deviceType", mod: set(func(r *protov1.EnrollRequest) { r.DeviceType = strings.Repeat("t", 64) })},
		{name: "device-type-space", desc: "deviceType with a space", expect: "bad_request", field: "deviceType", mod: set(func(r *protov1.EnrollRequest) { r.DeviceType = "sensor v1" })},
		// labels.
		{name: "labels-too-many", desc: "33 labels", expect: "bad_request", field: "labels", mod: set(func(r *protov1.EnrollRequest) { r.Labels = manyLabels(33) })},
		{name: "label-key-invalid", desc: "label key -region (must start with an alphanumeric character)", expect: "bad_request", field: "labels",
			mod: set(func(r *protov1.EnrollRequest) { r.Labels = map[string]string{"-region": "eu"} })},
		{name: "label-value-too-long", desc: "label value of 64 characters", expect: "bad_request", field: "labels",
			mod: set(func(r *protov1.EnrollRequest) { r.Labels = map[string]string{"region": strings.Repeat("v", 64)} })},
		{name: "label-value-space", desc: "label value with a space", expect: "bad_request", field: "labels",
			mod: set(func(r *protov1.EnrollRequest) { r.Labels = map[string]string{"region": "eu west"} })},
		// version.
		{name: "version-empty", desc: "version empty", expect: "bad_request", field: "version", mod: set(func(r *protov1.EnrollRequest) { r.Version = "" })},
		{name: "version-space", desc: "version with a space", expect: "bad_request", field: "version", mod: set(func(r *protov1.EnrollRequest) { r.Version = "2.0.3 beta" })},
		{name: "version-too-long", desc: "version of 129 characters", expect: "bad_request", field: "version", mod: set(func(r *protov1.EnrollRequest) { r.Version = "2." + strings.Repeat("0", 127) })},
		{name: "version-non-ascii", desc: "version with a non-ASCII character", expect: "bad_request", field: "version", mod: set(func(r *protov1.EnrollRequest) { r.Version = "2.0.3-é" })},
		// securityFloor.
		{name: "security-floor-negative", desc: "securityFloor -1", expect: "bad_request", field: "securityFloor", mod: set(func(r *protov1.EnrollRequest) { r.SecurityFloor = -1 })},
		{name: "security-floor-too-large", desc: "securityFloor 4294967296", expect: "bad_request", field: "securityFloor", mod: set(func(r *protov1.EnrollRequest) { r.SecurityFloor = 1 << 32 })},
		// JSON.
		{name: "unknown-field", desc: "an extra field firmware", expect: "malformed_json",
			raw: func(b []byte) []byte { return append(b[:len(b)-1], []byte(`,"firmware":"sensor.bin"}`)...) }},
		{name: "security-floor-string", desc: "securityFloor as the string \"4\"", expect: "malformed_json", raw: func(b []byte) []byte { return edit(t, b, "securityFloor", `"4"`, false) }},
		{name: "security-floor-fraction", desc: "securityFloor 4.5", expect: "malformed_json", raw: func(b []byte) []byte { return edit(t, b, "securityFloor", `4.5`, false) }},
		{name: "labels-not-strings", desc: "a label value that is a number", expect: "malformed_json", raw: func(b []byte) []byte { return edit(t, b, "labels", `{"region":1}`, false) }},
		{name: "field-name-case", desc: "\"DeviceID\" instead of \"deviceID\": field names match case-sensitively", expect: "malformed_json",
			raw: func(b []byte) []byte { return bytes.Replace(b, []byte(`"deviceID"`), []byte(`"DeviceID"`), 1) }},
		{name: "duplicate-field", desc: "deviceID twice", expect: "malformed_json",
			raw: func(b []byte) []byte { return bytes.Replace(b, []byte(`{`), []byte(`{"deviceID":"sensor-other",`), 1) }},
		{name: "labels-null", desc: "labels: null (leave the field out instead)", expect: "malformed_json", raw: func(b []byte) []byte { return edit(t, b, "labels", "null", false) }},
		{name: "trailing-data", desc: "a second JSON object after the request", expect: "malformed_json", rawBody: true, raw: func(b []byte) []byte { return append(b, []byte("{}")...) }},
		{name: "not-an-object", desc: "the request inside a JSON array", expect: "malformed_json", rawBody: true, raw: func(b []byte) []byte { return append(append([]byte("["), b...), ']') }},
		// Known device.
		{name: "key-mismatch", desc: "the device ID is enrolled with another X25519 key", expect: "key_mismatch",
			before: []protov1.EnrollRequest{func() protov1.EnrollRequest { r := base(); r.PublicKey = b64(otherKey); return r }()}},
		{name: "kem-changed", desc: "the device ID is enrolled with a P-256 key; this request has an X25519 key", expect: "key_mismatch",
			before: []protov1.EnrollRequest{func() protov1.EnrollRequest { r := base(); asP256(&r); return r }()}},
	}
	for _, c := range cases {
		r := base()
		if c.mod != nil {
			c.mod(&r)
		}
		body := marshal(r)
		if c.raw != nil {
			body = c.raw(body)
		}
		v := enrollVector{Name: c.name, Description: c.desc, Expect: c.expect, Status: status[c.expect], Field: c.field}
		for _, b := range c.before {
			v.Before = append(v.Before, marshal(b))
		}
		if c.rawBody {
			s := string(body)
			v.RawBody = &s
		} else {
			v.Request = body
		}
		if c.expect == Accept {
			v.Status = http.StatusCreated
			if len(c.before) > 0 {
				v.Status = http.StatusOK
			}
			// The sealed token is random: the file shows the rest.
			v.Response = &protov1.EnrollResponse{DeviceID: r.DeviceID, AssignmentKeyID: doc.AssignmentKeyID}
		}
		doc.Vectors = append(doc.Vectors, v)
	}
	return doc
}

type noCutoffs struct{}

func (noCutoffs) Cutoffs(string) ([]uint64, bool) { return nil, false }

// newEnrollServer is a real device API server with an empty catalog,
// serving the enrollment of the file: its bootstrap token and the
// assignment key of 3-assignments.json.
func newEnrollServer(t *testing.T, keyID string) http.Handler {
	t.Helper()
	dir := t.TempDir()
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "devices.db"), sqlite.Options{Synchronous: "NORMAL", Readers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	blobs, err := blobstore.NewFS(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := assignment.NewSigner(ed25519.NewKeyFromSeed(label("assignment key ed25519")))
	if err != nil {
		t.Fatal(err)
	}
	if signer.KeyID() != keyID {
		t.Fatalf("server key %s, the file's assignmentKeyID is %s", signer.KeyID(), keyID)
	}
	tokens := otaserver.NewTokenSet()
	tokens.Replace(map[string][]byte{"factory": []byte(bootstrapToken)})
	s, err := otaserver.New(otaserver.Config{
		Store: store, Catalog: catalog.Static{S: catalog.Build(nil, nil, nil)}, Cutoffs: noCutoffs{}, Blobs: blobs,
		Signer: signer, Tokens: tokens, Metrics: otaserver.NewMetrics(prometheus.NewRegistry()), Log: logr.Discard(),
		DeviceRate: 1000, DeviceBurst: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s.Handler()
}

func post(h http.Handler, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/v1/enroll", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestEnroll checks every vector of 4-enroll.json against the server's
// validation (EnrollRequest.Validate) and against the whole enrollment
// handler of a real server.
func TestEnroll(t *testing.T) {
	var f enrollDoc
	load(t, enrollFile, &f)
	tokenRE := regexp.MustCompile(f.TokenPattern)
	known := map[string]bool{}
	for _, c := range enrollClasses {
		known[c.Expect] = true
	}
	var (
		names, descs, expects []string
		shared                = newEnrollServer(t, f.AssignmentKeyID)
		kw                    = readKeywrapVectors(t)
	)
	for _, v := range f.Vectors {
		names, descs, expects = append(names, v.Name), append(descs, v.Description), append(expects, v.Expect)
		t.Run(v.Name, func(t *testing.T) {
			if !known[v.Expect] {
				t.Fatalf("unknown expect %q", v.Expect)
			}
			if (v.Request == nil) == (v.RawBody == nil) {
				t.Fatal("want exactly one of request and rawBody")
			}
			body := []byte(v.Request)
			if v.RawBody != nil {
				body = []byte(*v.RawBody)
			}

			// The server's validation function on the decoded request.
			var req protov1.EnrollRequest
			if err := strictjson.Unmarshal(body, &req); err == nil && v.RawBody == nil {
				_, verr := req.Validate()
				switch {
				case v.Expect == "malformed_json":
					t.Errorf("request decodes strictly; want malformed_json")
				case v.Expect == "bad_bootstrap_token":
					// Decided on the token, before Validate runs.
				case (verr != nil) != (v.Expect == "bad_request"):
					t.Errorf("Validate = %v, want %s", verr, v.Expect)
				case verr != nil && !strings.HasPrefix(verr.Error(), v.Field+":"):
					t.Errorf("Validate = %v, want an error about %s", verr, v.Field)
				}
			} else if v.Expect != "malformed_json" {
				t.Errorf("request does not decode strictly (%v); want %s", err, v.Expect)
			}

			// The whole handler. Refusals without before change nothing
			// on the server, so they share one.
			var h http.Handler
			if v.Expect == Accept || len(v.Before) > 0 {
				h = newEnrollServer(t, f.AssignmentKeyID)
			} else {
				h = shared
			}
			for i, b := range v.Before {
				if rec := post(h, b); rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
					t.Fatalf("before[%d]: %d %s", i, rec.Code, rec.Body)
				}
			}
			rec := post(h, body)
			if rec.Code != v.Status {
				t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body, v.Status)
			}
			if v.Expect != Accept {
				var e struct{ Code, Message string }
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != v.Expect {
					t.Fatalf("answer %s, want code %s", rec.Body, v.Expect)
				}
				if v.Field != "" && !strings.HasPrefix(e.Message, v.Field+":") {
					t.Errorf("message %q does not name %s", e.Message, v.Field)
				}
				if v.Response != nil {
					t.Error("refusal with a response")
				}
				return
			}
			var got protov1.EnrollResponse
			dec := json.NewDecoder(rec.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatal(err)
			}
			want := v.Response
			if want == nil || got.DeviceID != want.DeviceID || got.DeviceID != req.DeviceID || got.AssignmentKeyID != want.AssignmentKeyID ||
				got.LegacyToken != "" || want.LegacyToken != "" || want.SealedToken != "" {
				t.Fatalf("answer %+v, vector %+v", got, want)
			}
			// The device's private key (2-unwrap.json's) opens it.
			var priv *ecdh.PrivateKey
			for _, kv := range kw {
				if pub := mustHex(t, "publicKey", kv.PublicKey); b64(pub) == req.PublicKey && kv.KEM == req.KEM {
					k, err := curveOf(t, kv.KEM).NewPrivateKey(mustHex(t, "privateKey", kv.PrivateKey))
					if err != nil {
						t.Fatal(err)
					}
					priv = k
				}
			}
			if priv == nil {
				t.Fatalf("the accepted request's key is not one of %s", unwrapFile)
			}
			if sealed, err := base64.StdEncoding.DecodeString(got.SealedToken); err != nil || len(sealed) != f.SealedTokenSizes[req.KEM] {
				t.Fatalf("sealedToken %q: %d bytes (%v), want %d", got.SealedToken, len(sealed), err, f.SealedTokenSizes[req.KEM])
			}
			tok, err := tokenseal.OpenResponse(keywrap.KEM(req.KEM), priv, req.DeviceID, got)
			if err != nil || !tokenRE.MatchString(tok) {
				t.Fatalf("sealed token opens to %q, %v", tok, err)
			}
		})
	}
	checkNames(t, enrollFile, names, descs)
	t.Logf("%s: %d vectors %v", enrollFile, len(f.Vectors), count(expects))
}
