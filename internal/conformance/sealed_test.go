package conformance

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/tokenseal"
)

const (
	sealedFile = "5-sealed-token.json"
	// tokensealVectors are protocol/v1/tokenseal's pinned sealed tokens
	// (HPKE sealing is randomized); every one is copied into sealedFile,
	// and the refusals are derived from them.
	tokensealVectors = "../../protocol/v1/tokenseal/testdata/vectors.json"
	tokensealSource  = "protocol/v1/tokenseal/testdata/vectors.json"
	// openFailed is the refusal class: tokenseal.ErrOpen, an enrollment
	// answer the agent cannot use (agent.ErrEnrollAnswer).
	openFailed = "open-failed"
)

// tokensealVector is protocol/v1/tokenseal's vector format.
type tokensealVector struct {
	KEM         string `json:"kem"`
	PrivateKey  string `json:"privateKey"`
	PublicKey   string `json:"publicKey"`
	ServerKeyID string `json:"serverKeyID"`
	DeviceID    string `json:"deviceID"`
	Info        string `json:"info"`
	Sealed      string `json:"sealed"`
	Token       string `json:"token"`
}

type sealedDoc struct {
	fileHeader
	InfoPrefix string         `json:"infoPrefix"`
	Vectors    []sealedVector `json:"vectors"`
}

type sealedVector struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Expect      string `json:"expect"`
	Source      string `json:"source,omitempty"`
	KEM         string `json:"kem"`
	// PrivateKey and PublicKey are the device's key pair, DeviceID its
	// own ID.
	PrivateKey string `json:"privateKey"`
	PublicKey  string `json:"publicKey"`
	DeviceID   string `json:"deviceID"`
	// Response is the enrollment answer as on the wire.
	Response protov1.EnrollResponse `json:"response"`
	// Info is what the device builds from the answer's assignmentKeyID
	// and its own ID; empty when the key ID is not a hex SHA-256.
	Info  string `json:"info,omitempty"`
	Token string `json:"token,omitempty"`
}

func readTokensealVectors(t *testing.T) []tokensealVector {
	t.Helper()
	raw, err := os.ReadFile(tokensealVectors)
	if err != nil {
		t.Fatal(err)
	}
	var vs []tokensealVector
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&vs); err != nil {
		t.Fatalf("%s: %v", tokensealVectors, err)
	}
	return vs
}

// tokensealVector returns the vector of kem whose token has n characters.
func tokensealVectorOf(t *testing.T, kem string, n int) tokensealVector {
	t.Helper()
	for _, v := range readTokensealVectors(t) {
		if v.KEM == kem && len(v.Token) == n {
			return v
		}
	}
	t.Fatalf("%s has no %s vector with a %d-character token", tokensealVectors, kem, n)
	return tokensealVector{}
}

func sealedInfoHex(t *testing.T, keyID, deviceID string) string {
	t.Helper()
	id, err := tokenseal.ParseKeyID(keyID)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(tokenseal.Info(id, deviceID))
}

func genSealed(t *testing.T) any {
	f := sealedDoc{
		fileHeader: header("otaflow-conformance/v1 sealed-token", "docs/protocol.md \"Opening the sealed token\"",
			"The device (kem, privateKey, publicKey, deviceID) received response to POST /v1/enroll. Refuse it unless response.deviceID is deviceID and it has no token field; decode sealedToken (standard base64, padded); build info from response.assignmentKeyID (64 lowercase hex characters, decoded to 32 bytes) and deviceID (it must equal info); HPKE base-mode SetupBaseR(enc = sealed[:32 or 65], privateKey, info) and Open(aad = empty, sealed[32 or 65:]); the result must be 1–512 characters of RFC 6750's b64token. Compare the verdict with expect, and for accept the result with token.",
			class{Accept, "the sealed token opens for this device and key ID; the result is token, the bearer token to store"},
			class{openFailed, "the answer is for another device or also carries a clear token, sealedToken is not standard padded base64, the key ID is malformed, HPKE decapsulation or open fails, or the result is not a bearer token (tokenseal.ErrOpen; the agent's agent.ErrEnrollAnswer)"}),
		InfoPrefix: hex.EncodeToString([]byte(tokenseal.InfoPrefix)),
	}
	b64 := base64.StdEncoding.EncodeToString
	for _, kem := range []string{"x25519", "p256"} {
		v := tokensealVectorOf(t, kem, 43)
		encSize := map[string]int{"x25519": 32, "p256": 65}[kem]
		s := mustHex(t, "sealed", v.Sealed)
		answer := func(sealed []byte) protov1.EnrollResponse {
			return protov1.EnrollResponse{DeviceID: v.DeviceID, SealedToken: b64(sealed), AssignmentKeyID: v.ServerKeyID}
		}
		add := func(name, desc, expect, deviceID string, priv *ecdh.PrivateKey, r protov1.EnrollResponse) {
			sv := sealedVector{
				Name: kem + "-" + name, Description: desc, Expect: expect, KEM: kem,
				PrivateKey: v.PrivateKey, PublicKey: v.PublicKey, DeviceID: deviceID,
				Response: r, Info: sealedInfoHex(t, r.AssignmentKeyID, deviceID),
			}
			if priv != nil {
				sv.PrivateKey, sv.PublicKey = hex.EncodeToString(priv.Bytes()), hex.EncodeToString(priv.PublicKey().Bytes())
			}
			f.Vectors = append(f.Vectors, sv)
		}
		add("accept", fmt.Sprintf("a token sealed for device %q and the server key (copied from %s)", v.DeviceID, tokensealSource), Accept, v.DeviceID, nil, answer(s))
		f.Vectors[len(f.Vectors)-1].Source, f.Vectors[len(f.Vectors)-1].Token = tokensealSource, v.Token
		short := tokensealVectorOf(t, kem, keywrap.ContentKeySize)
		f.Vectors = append(f.Vectors, sealedVector{
			Name: kem + "-accept-32", Description: fmt.Sprintf("a 32-character token, sealed to the size of a wrapped content key (copied from %s)", tokensealSource),
			Expect: Accept, Source: tokensealSource, KEM: kem, PrivateKey: short.PrivateKey, PublicKey: short.PublicKey, DeviceID: short.DeviceID,
			Response: protov1.EnrollResponse{DeviceID: short.DeviceID, SealedToken: b64(mustHex(t, "sealed", short.Sealed)), AssignmentKeyID: short.ServerKeyID},
			Info:     sealedInfoHex(t, short.ServerKeyID, short.DeviceID), Token: short.Token,
		})

		other := func(edit func(r *protov1.EnrollResponse)) protov1.EnrollResponse { r := answer(s); edit(&r); return r }
		otherDevice := func(id string) protov1.EnrollResponse {
			return other(func(r *protov1.EnrollResponse) { r.DeviceID = id })
		}
		add("other-device", "a device \"sensor-00043\" received the answer sealed for \"sensor-00042\", renamed to it", openFailed, "sensor-00043", nil, otherDevice("sensor-00043"))
		add("device-id-prefix", "the device ID is a prefix of the right one (\"sensor-0004\"): the ID runs to the end of info, with no length", openFailed, "sensor-0004", nil, otherDevice("sensor-0004"))
		add("answer-for-other-device", "the answer names another device than the one that asked", openFailed, v.DeviceID, nil, otherDevice("sensor-00043"))
		const hexDigits = "0123456789abcdef"
		otherKey := v.ServerKeyID[:63] + string(hexDigits[strings.IndexByte(hexDigits, v.ServerKeyID[63])^1])
		add("other-server-key", "assignmentKeyID differs in its last hex digit (the token was sealed for another server key)", openFailed, v.DeviceID, nil,
			other(func(r *protov1.EnrollResponse) { r.AssignmentKeyID = otherKey }))
		add("server-key-uppercase", "assignmentKeyID in uppercase hex: key IDs are lowercase", openFailed, v.DeviceID, nil,
			other(func(r *protov1.EnrollResponse) { r.AssignmentKeyID = strings.ToUpper(v.ServerKeyID) }))
		add("wrong-private-key", "opened with another device's private key", openFailed, v.DeviceID, otherDeviceKey(t, kem), answer(s))
		if kem == "x25519" {
			add("tampered-enc", "a bit of enc (the ephemeral public key) flipped", openFailed, v.DeviceID, nil, answer(flip(s, 0, 0x01)))
			add("zero-enc", "enc is the all-zero (small-order) point: the shared secret would be zero", openFailed, v.DeviceID, nil, answer(cat(make([]byte, 32), s[32:])))
		} else {
			add("tampered-enc", "the last byte of enc's Y coordinate changed: enc is no longer on the curve", openFailed, v.DeviceID, nil, answer(flip(s, 64, 0x01)))
			add("enc-other-point", "enc replaced by another valid point (the device's own public key)", openFailed, v.DeviceID, nil, answer(cat(mustHex(t, "publicKey", v.PublicKey), s[65:])))
		}
		add("tampered-ciphertext", "a bit of the encrypted token flipped", openFailed, v.DeviceID, nil, answer(flip(s, encSize+3, 0x01)))
		add("tampered-tag", "a bit of the AEAD tag flipped", openFailed, v.DeviceID, nil, answer(flip(s, len(s)-1, 0x80)))
		add("truncated", "the last byte of the sealed token missing", openFailed, v.DeviceID, nil, answer(s[:len(s)-1]))
		add("extended", "a zero byte appended to the sealed token", openFailed, v.DeviceID, nil, answer(cat(s, []byte{0})))
		add("base64-unpadded", "sealedToken without its = padding", openFailed, v.DeviceID, nil,
			other(func(r *protov1.EnrollResponse) { r.SealedToken = base64.RawStdEncoding.EncodeToString(s) }))
		add("hex", "sealedToken in hex instead of base64", openFailed, v.DeviceID, nil,
			other(func(r *protov1.EnrollResponse) { r.SealedToken = hex.EncodeToString(s) }))
		add("clear-token-too", "the answer also carries the token in clear (token): a revision 4 server never sends it", openFailed, v.DeviceID, nil,
			other(func(r *protov1.EnrollResponse) { r.LegacyToken = v.Token }))
		add("no-sealed-token", "the answer has no sealedToken", openFailed, v.DeviceID, nil, other(func(r *protov1.EnrollResponse) { r.SealedToken = "" }))

		// Domain separation: 2-unwrap.json's wrapped content key, for the
		// same device and with the key ID set to the blob digest, so
		// that only the info prefixes differ.
		kw := readKeywrapVectors(t)[kem]
		kwPriv, err := curveOf(t, kem).NewPrivateKey(mustHex(t, "privateKey", kw.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		add("content-key-as-token", "2-unwrap.json's wrapped content key presented as a sealed token, with assignmentKeyID = its blob digest: the info prefixes differ", openFailed, kw.DeviceID, kwPriv,
			protov1.EnrollResponse{DeviceID: kw.DeviceID, SealedToken: b64(mustHex(t, "wrapped", kw.Wrapped)), AssignmentKeyID: kw.BlobDigest})
	}
	return f
}

// TestSealed opens every vector of 5-sealed-token.json with
// protocol/v1/tokenseal, as the agent does.
func TestSealed(t *testing.T) {
	var f sealedDoc
	load(t, sealedFile, &f)
	if f.InfoPrefix != hex.EncodeToString([]byte(tokenseal.InfoPrefix)) {
		t.Fatalf("infoPrefix %s", f.InfoPrefix)
	}
	var names, descs, expects []string
	for _, v := range f.Vectors {
		names, descs, expects = append(names, v.Name), append(descs, v.Description), append(expects, v.Expect)
		t.Run(v.Name, func(t *testing.T) {
			kem, err := keywrap.ParseKEM(v.KEM)
			if err != nil {
				t.Fatal(err)
			}
			priv, err := curveOf(t, v.KEM).NewPrivateKey(mustHex(t, "privateKey", v.PrivateKey))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(priv.PublicKey().Bytes()); got != v.PublicKey {
				t.Fatalf("publicKey is not privateKey's: %s", got)
			}
			if got := sealedInfoHex(t, v.Response.AssignmentKeyID, v.DeviceID); got != v.Info || (v.Info != "" && !strings.HasPrefix(v.Info, f.InfoPrefix)) {
				t.Fatalf("info = %s, want %s", got, v.Info)
			}
			// The answer as the device decodes it from the wire.
			wire, err := json.Marshal(v.Response)
			if err != nil {
				t.Fatal(err)
			}
			var r protov1.EnrollResponse
			if err := json.Unmarshal(wire, &r); err != nil {
				t.Fatal(err)
			}
			tok, err := tokenseal.OpenResponse(kem, priv, v.DeviceID, r)
			got := Accept
			switch {
			case errors.Is(err, tokenseal.ErrOpen):
				got = openFailed
			case err != nil:
				t.Fatalf("unclassified error %v", err)
			}
			if got != v.Expect {
				t.Fatalf("verdict %s (%v), want %s", got, err, v.Expect)
			}
			if (v.Expect == Accept) != (v.Token != "") || tok != v.Token {
				t.Fatalf("token %q, vector says %q", tok, v.Token)
			}
		})
	}
	checkNames(t, sealedFile, names, descs)
	t.Logf("%s: %d vectors %v", sealedFile, len(f.Vectors), count(expects))
}

// TestSealedKeepsTokensealVectors: every vector of protocol/v1/tokenseal
// is in 5-sealed-token.json with the same values.
func TestSealedKeepsTokensealVectors(t *testing.T) {
	var f sealedDoc
	load(t, sealedFile, &f)
	for _, tv := range readTokensealVectors(t) {
		found := false
		for _, v := range f.Vectors {
			if v.Source != tokensealSource || v.KEM != tv.KEM || v.Token != tv.Token {
				continue
			}
			sealed, err := base64.StdEncoding.DecodeString(v.Response.SealedToken)
			found = err == nil && v.Expect == Accept && v.PrivateKey == tv.PrivateKey && v.PublicKey == tv.PublicKey &&
				v.DeviceID == tv.DeviceID && v.Response.DeviceID == tv.DeviceID && v.Response.AssignmentKeyID == tv.ServerKeyID &&
				v.Info == tv.Info && hex.EncodeToString(sealed) == tv.Sealed
		}
		if !found {
			t.Errorf("%s vector of %s (%d-character token) missing from %s or different", tv.KEM, tokensealSource, len(tv.Token), sealedFile)
		}
	}
}
