package conformance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/agent"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

const (
	assignmentsFile = "3-assignments.json"
	domain          = "otaflow-assignment/v1\n"
)

// Agent refusal codes (agent/refusal.go) used as "expect" values.
var assignmentClasses = []class{
	{Accept, "the device acts on the answer: installs (install, rollback) or raises its floor to securityFloorAfter (commit)"},
	{agent.RefuseMalformed, "the answer or the payload does not parse strictly, a field is invalid, or the flags do not match the action (ErrMalformed, or the device's flag checks)"},
	{agent.RefuseBadSignature, "keyID is not the trusted key's, or the signature does not verify over \"otaflow-assignment/v1\\n\" ‖ payload (ErrBadSignature)"},
	{agent.RefuseWrongDevice, "deviceID is another device's (ErrWrongDevice)"},
	{agent.RefuseExpired, "now − skew ≥ expiresAt (ErrExpired)"},
	{agent.RefuseNotYetValid, "issuedAt > now + skew (ErrNotYetValid)"},
	{agent.RefuseNonce, "the device sent a nonce and the payload's nonce is another"},
	{agent.RefuseBelowFloor, "install or rollback with securityVersion below the device's committed floor"},
	{agent.RefuseSuite, "suite is not otaflow-enc/v1 (protocol/v1/assignment refuses it as malformed; the agent names it)"},
	{agent.RefuseKEM, "the key is wrapped for another KEM than the device's"},
	{agent.RefuseRolloutMismatch, "the signed rollout is not the answer's rollout"},
	{agent.RefuseCommit, "a commit answer whose payload is not commit: true, or is for another version than the running one"},
}

// verifierClasses are what protocol/v1/assignment's Verifier.Verify decides
// (docs/envelope.md section 3, steps 1 to 5).
var verifierClasses = []struct {
	name string
	err  error
}{
	{agent.RefuseBadSignature, assignment.ErrBadSignature},
	{agent.RefuseWrongDevice, assignment.ErrWrongDevice},
	{agent.RefuseExpired, assignment.ErrExpired},
	{agent.RefuseNotYetValid, assignment.ErrNotYetValid},
	{agent.RefuseMalformed, assignment.ErrMalformed},
}

type assignmentDoc struct {
	fileHeader
	Domain         string             `json:"domain"`
	MaxPayloadSize int                `json:"maxPayloadSize"`
	Keys           map[string]keyInfo `json:"keys"`
	Vectors        []assignmentVector `json:"vectors"`
}

// keyInfo is a server signing key. The private halves are test keys, given
// so that an implementation can sign its own cases.
type keyInfo struct {
	Alg         string `json:"alg"`
	Description string `json:"description"`
	PrivateKey  string `json:"privateKey"`
	PublicKey   string `json:"publicKey"`
	PKIX        string `json:"pkix"`
	KeyID       string `json:"keyID"`
}

// deviceState is what the device checks the answer against.
type deviceState struct {
	DeviceID         string `json:"deviceID"`
	KEM              string `json:"kem"`
	Nonce            string `json:"nonce"`
	RunningVersion   string `json:"runningVersion"`
	SecurityFloor    int64  `json:"securityFloor"`
	Now              string `json:"now"`
	ClockSkewSeconds int64  `json:"clockSkewSeconds"`
}

type assignmentVector struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Expect      string `json:"expect"`
	// VerifierExpect is protocol/v1/assignment's verdict (Verifier.Verify)
	// on response.assignment; the device's policy comes after it.
	VerifierExpect     string                 `json:"verifierExpect,omitempty"`
	SecurityFloorAfter *int64                 `json:"securityFloorAfter,omitempty"`
	TrustedKey         string                 `json:"trustedKey"`
	Device             deviceState            `json:"device"`
	Response           protov1.UpdateResponse `json:"response"`
}

// serverKey is a fixed signing key.
type serverKey struct {
	info   keyInfo
	signer crypto.Signer // deterministic: Ed25519, or ECDSA with RFC 6979 nonces
}

// rfc6979 signs with deterministic ECDSA nonces (a nil random source), so
// that regenerated vectors are identical. The server signs with random
// nonces; both verify the same way.
type rfc6979 struct{ k *ecdsa.PrivateKey }

func (s rfc6979) Public() crypto.PublicKey { return s.k.Public() }
func (s rfc6979) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.k.Sign(nil, digest, opts)
}

func newKeyInfo(t *testing.T, alg, desc string, priv []byte, pub crypto.PublicKey, raw []byte) keyInfo {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return keyInfo{Alg: alg, Description: desc, PrivateKey: hex.EncodeToString(priv), PublicKey: hex.EncodeToString(raw),
		PKIX: hex.EncodeToString(der), KeyID: hexSum(der)}
}

func serverKeys(t *testing.T) map[string]serverKey {
	t.Helper()
	keys := map[string]serverKey{}
	for _, name := range []string{"ed25519", "other-ed25519"} {
		seed := label("assignment key " + name)
		k := ed25519.NewKeyFromSeed(seed)
		desc := "the OTA server's assignment key the device trusts (Ed25519); privateKey is the 32-byte seed"
		if name != "ed25519" {
			desc = "a key the device does not trust"
		}
		keys[name] = serverKey{newKeyInfo(t, "ed25519", desc, seed, k.Public(), k.Public().(ed25519.PublicKey)), k}
	}
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), label("assignment key p256"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	keys["p256"] = serverKey{newKeyInfo(t, "ecdsa-p256-sha256",
		"the OTA server's assignment key the device trusts (ECDSA P-256, DER signatures over SHA-256); privateKey is the 32-byte scalar, publicKey the uncompressed point",
		priv, &k.PublicKey, raw), rfc6979{k}}
	return keys
}

// signRaw signs prefix ‖ payload as the server does (signPayload), for
// payloads Signer.Sign refuses to sign and for other prefixes.
func (k serverKey) signRaw(t *testing.T, prefix string, payload []byte) []byte {
	t.Helper()
	msg := append([]byte(prefix), payload...)
	var (
		sig []byte
		err error
	)
	switch k.info.Alg {
	case "ed25519":
		sig, err = k.signer.Sign(nil, msg, crypto.Hash(0))
	default:
		d := sha256.Sum256(msg)
		sig, err = k.signer.Sign(nil, d[:], crypto.SHA256)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// field is one top-level key of a payload with its value as serialized.
type field struct {
	key string
	val json.RawMessage
}

func splitObject(t *testing.T, p []byte) []field {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(p))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("payload is not an object: %v", err)
	}
	var fs []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, field{tok.(string), v})
	}
	return fs
}

func joinObject(fs []field) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(f.val)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// edit returns p with the value of key replaced (or the field removed when
// val is nil).
func edit(t *testing.T, p []byte, key string, val string, remove bool) []byte {
	t.Helper()
	var out []field
	found := false
	for _, f := range splitObject(t, p) {
		if f.key == key {
			found = true
			if remove {
				continue
			}
			f.val = json.RawMessage(val)
		}
		out = append(out, f)
	}
	if !found {
		t.Fatalf("payload has no %q", key)
	}
	return joinObject(out)
}

// asgCase defines one vector. Unless raw or prefix is set, the payload is
// signed by the real assignment.Signer.
type asgCase struct {
	name, desc, expect, verifier string
	key                          string // trusted key; "ed25519" when empty
	signWith                     string // signing key; the trusted key when empty
	action                       string // "install" when empty
	rollout                      string // the answer's rollout; the payload's when empty
	noAssignment                 bool
	mod                          func(a *assignment.Assignment, d *deviceState)
	raw                          func(p []byte) []byte // edits the payload bytes before signing
	prefix                       *string               // signs prefix ‖ payload instead of the domain
	sig                          func(s *assignment.Signed)
}

var (
	t0          = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	deviceNonce = "8f1c0b5e2a9d4c7f3b6e1a0d5c8f2b4e"
)

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func genAssignments(t *testing.T) any {
	keys := serverKeys(t)
	kw := readKeywrapVectors(t)
	x, p := kw["x25519"], kw["p256"]
	vendorSig := sha512.Sum512(label("vendor signature"))
	plain := mod251(0, 3000)
	base := func() assignment.Assignment {
		return assignment.Assignment{
			DeviceID: x.DeviceID, Rollout: "fleet/sensor-2.1.0-eu", Release: "fleet/sensor-2.1.0",
			Version: "2.1.0", SecurityVersion: 5,
			PlainSHA256: hexSum(plain), PlainSize: int64(len(plain)),
			EncryptedSHA256: x.BlobDigest, EncryptedSize: envelope.EncryptedSize(int64(len(plain)), envelope.DefaultChunkLog2),
			Suite: envelope.Suite, BlobURL: "https://ota.example.com/v1/blobs/" + x.BlobDigest,
			KEM: "x25519", WrappedKey: mustHex(t, "wrapped", x.Wrapped),
			VendorSignature: base64.StdEncoding.EncodeToString(vendorSig[:]),
			Nonce:           deviceNonce, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour),
		}
	}
	baseDevice := func() deviceState {
		return deviceState{DeviceID: x.DeviceID, KEM: "x25519", Nonce: deviceNonce, RunningVersion: "2.0.3",
			SecurityFloor: 4, Now: rfc3339(t0.Add(5 * time.Second)), ClockSkewSeconds: 300}
	}
	asRollback := func(a *assignment.Assignment, d *deviceState) {
		a.Release, a.Version, a.SecurityVersion, a.Rollback = "fleet/sensor-2.0.3", "2.0.3", 4, true
		d.RunningVersion = "2.1.0"
	}
	asCommit := func(a *assignment.Assignment, d *deviceState) {
		a.Commit = true
		d.RunningVersion = "2.1.0"
	}
	setNow := func(d *deviceState, now time.Time) { d.Now = rfc3339(now) }
	setRaw := func(key, val string) func([]byte) []byte {
		return func(p []byte) []byte { return edit(t, p, key, val, false) }
	}
	str := func(s string) *string { return &s }
	cases := []asgCase{
		// Accepted answers.
		{name: "install", desc: "install answer exactly as the server signs it (Ed25519)", expect: Accept},
		{name: "install-ecdsa-p256", desc: "install answer signed with the ECDSA P-256 key", expect: Accept, key: "p256"},
		{name: "install-p256-device", desc: "install answer for a device with a P-256 HPKE key (113-byte wrappedKey)", expect: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) {
				a.KEM, a.WrappedKey, d.KEM = "p256", mustHex(t, "wrapped", p.Wrapped), "p256"
			}},
		{name: "install-no-nonce-sent", desc: "the check sent no nonce; the payload carries a server nonce, which the device cannot compare", expect: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) {
				a.Nonce, d.Nonce = hex.EncodeToString(label("server nonce")[:16]), ""
			}},
		{name: "install-at-floor", desc: "securityVersion equals the device's floor", expect: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) { d.SecurityFloor = 5 }},
		{name: "install-without-vendor-signature", desc: "vendorSignature is empty: valid here; whether unsigned images are installed is the device's policy, after decryption", expect: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) { a.VendorSignature = "" }},
		{name: "issued-at-skew-edge", desc: "issuedAt = now + skew exactly: still valid", expect: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) { setNow(d, t0.Add(-300*time.Second)) }},
		{name: "expires-at-skew-edge", desc: "now − skew is one second before expiresAt: still valid", expect: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) { setNow(d, t0.Add(time.Hour+299*time.Second)) }},
		{name: "rollback", desc: "rollback answer: the previous release (2.0.3, securityVersion 4 = the floor) with rollback: true", expect: Accept, action: protov1.ActionRollback, mod: asRollback},
		{name: "commit", desc: "commit answer for the running release 2.1.0: the floor rises from 4 to its securityVersion 5", expect: Accept, action: protov1.ActionCommit, mod: asCommit},
		{name: "commit-at-floor", desc: "commit whose securityVersion equals the floor: accepted, changes nothing", expect: Accept, action: protov1.ActionCommit,
			mod: func(a *assignment.Assignment, d *deviceState) { asCommit(a, d); d.SecurityFloor = 5 }},
		{name: "commit-below-floor", desc: "commit whose securityVersion is below the floor: the floor is not checked for a commit; accepted, changes nothing", expect: Accept, action: protov1.ActionCommit,
			mod: func(a *assignment.Assignment, d *deviceState) { asCommit(a, d); d.SecurityFloor = 6 }},

		// Signature and key.
		{name: "bad-signature", desc: "one bit of the Ed25519 signature flipped", expect: agent.RefuseBadSignature, verifier: agent.RefuseBadSignature,
			sig: func(s *assignment.Signed) { s.Signature = flip(s.Signature, 10, 0x01) }},
		{name: "bad-signature-ecdsa-p256", desc: "one bit of the ECDSA signature's s flipped", expect: agent.RefuseBadSignature, verifier: agent.RefuseBadSignature, key: "p256",
			sig: func(s *assignment.Signed) { s.Signature = flip(s.Signature, len(s.Signature)-1, 0x01) }},
		{name: "empty-signature", desc: "the signature is empty", expect: agent.RefuseBadSignature, verifier: agent.RefuseBadSignature,
			sig: func(s *assignment.Signed) { s.Signature = []byte{} }},
		{name: "signed-by-other-key", desc: "signed by a key the device does not trust, with the trusted key's keyID", expect: agent.RefuseBadSignature, verifier: agent.RefuseBadSignature,
			signWith: "other-ed25519", sig: func(s *assignment.Signed) { s.KeyID = keys["ed25519"].info.KeyID }},
		{name: "signed-by-other-key-own-id", desc: "signed by a key the device does not trust, with that key's keyID", expect: agent.RefuseBadSignature, verifier: agent.RefuseBadSignature,
			signWith: "other-ed25519"},
		{name: "unknown-key-id", desc: "valid signature by the trusted key, but keyID names another key", expect: agent.RefuseBadSignature, verifier: agent.RefuseBadSignature,
			sig: func(s *assignment.Signed) { s.KeyID = keys["other-ed25519"].info.KeyID }},
		{name: "payload-changed-after-signing", desc: "securityVersion changed from 5 to 50 after signing", expect: agent.RefuseBadSignature, verifier: agent.RefuseBadSignature,
			sig: func(s *assignment.Signed) { s.Payload = edit(t, s.Payload, "securityVersion", "50", false) }},
		{name: "no-domain-separation", desc: "signature over the payload alone, without the \"otaflow-assignment/v1\\n\" prefix", expect: agent.RefuseBadSignature, verifier: agent.RefuseBadSignature,
			prefix: str("")},
		{name: "wrong-domain", desc: "signature over \"otaflow-assignment/v2\\n\" ‖ payload", expect: agent.RefuseBadSignature, verifier: agent.RefuseBadSignature,
			prefix: str("otaflow-assignment/v2\n")},
		{name: "domain-without-newline", desc: "signature over \"otaflow-assignment/v1\" ‖ payload (no newline)", expect: agent.RefuseBadSignature, verifier: agent.RefuseBadSignature,
			prefix: str("otaflow-assignment/v1")},
		{name: "ecdsa-raw-signature", desc: "the ECDSA P-256 signature as raw r ‖ s (64 bytes) instead of ASN.1 DER", expect: agent.RefuseBadSignature, verifier: agent.RefuseBadSignature, key: "p256",
			sig: func(s *assignment.Signed) {
				var rs struct{ R, S *big.Int }
				if _, err := asn1.Unmarshal(s.Signature, &rs); err != nil {
					t.Fatal(err)
				}
				s.Signature = append(rs.R.FillBytes(make([]byte, 32)), rs.S.FillBytes(make([]byte, 32))...)
			}},

		// Device, time.
		{name: "other-device", desc: "signed for device sensor-00043", expect: agent.RefuseWrongDevice, verifier: agent.RefuseWrongDevice,
			mod: func(a *assignment.Assignment, d *deviceState) { a.DeviceID = "sensor-00043" }},
		{name: "device-id-case", desc: "signed for SENSOR-00042: device IDs compare byte for byte", expect: agent.RefuseWrongDevice, verifier: agent.RefuseWrongDevice,
			mod: func(a *assignment.Assignment, d *deviceState) { a.DeviceID = "SENSOR-00042" }},
		{name: "expired", desc: "now is an hour after expiresAt", expect: agent.RefuseExpired, verifier: agent.RefuseExpired,
			mod: func(a *assignment.Assignment, d *deviceState) { setNow(d, t0.Add(2*time.Hour)) }},
		{name: "expired-at-skew-edge", desc: "now − skew = expiresAt exactly: expired", expect: agent.RefuseExpired, verifier: agent.RefuseExpired,
			mod: func(a *assignment.Assignment, d *deviceState) { setNow(d, t0.Add(time.Hour+300*time.Second)) }},
		{name: "not-yet-valid", desc: "issuedAt = now + skew + 1 s", expect: agent.RefuseNotYetValid, verifier: agent.RefuseNotYetValid,
			mod: func(a *assignment.Assignment, d *deviceState) { setNow(d, t0.Add(-301*time.Second)) }},

		// Device policy after the signature checks.
		{name: "wrong-nonce", desc: "the payload's nonce is not the one the check sent (a replayed answer)", expect: agent.RefuseNonce, verifier: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) { d.Nonce = "0123456789abcdef0123456789abcdef" }},
		{name: "nonce-other-case", desc: "the payload's nonce is the check's nonce in uppercase: nonces are echoed byte for byte and compared exactly", expect: agent.RefuseNonce, verifier: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) { a.Nonce = strings.ToUpper(deviceNonce) }},
		{name: "below-floor", desc: "install with securityVersion 5 on a device whose floor is 6", expect: agent.RefuseBelowFloor, verifier: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) { d.SecurityFloor = 6 }},
		{name: "rollback-below-floor", desc: "rollback to securityVersion 4 on a device whose floor is 5", expect: agent.RefuseBelowFloor, verifier: Accept, action: protov1.ActionRollback,
			mod: func(a *assignment.Assignment, d *deviceState) { asRollback(a, d); d.SecurityFloor = 5 }},
		{name: "kem-mismatch", desc: "key wrapped for P-256 (kem p256), the device's key is X25519", expect: agent.RefuseKEM, verifier: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) {
				a.KEM, a.WrappedKey = "p256", mustHex(t, "wrapped", p.Wrapped)
			}},
		{name: "rollout-mismatch", desc: "the answer names rollout fleet/other, the payload fleet/sensor-2.1.0-eu", expect: agent.RefuseRolloutMismatch, verifier: Accept,
			rollout: "fleet/other"},
		{name: "commit-other-version", desc: "commit signed for 2.1.0, the device runs 2.0.3", expect: agent.RefuseCommit, verifier: Accept, action: protov1.ActionCommit,
			mod: func(a *assignment.Assignment, d *deviceState) { asCommit(a, d); d.RunningVersion = "2.0.3" }},
		{name: "commit-without-commit-flag", desc: "commit answer carrying an install payload (no commit: true)", expect: agent.RefuseCommit, verifier: Accept, action: protov1.ActionCommit,
			mod: func(a *assignment.Assignment, d *deviceState) { d.RunningVersion = "2.1.0" }},
		{name: "commit-with-rollback-flag", desc: "commit answer carrying a rollback payload (rollback: true, no commit)", expect: agent.RefuseCommit, verifier: Accept, action: protov1.ActionCommit,
			mod: func(a *assignment.Assignment, d *deviceState) { asRollback(a, d); a.Version = "2.1.0" }},
		{name: "install-with-commit-flag", desc: "install answer whose payload has commit: true", expect: agent.RefuseMalformed, verifier: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) { a.Commit = true }},
		{name: "install-with-rollback-flag", desc: "install answer whose payload has rollback: true", expect: agent.RefuseMalformed, verifier: Accept,
			mod: func(a *assignment.Assignment, d *deviceState) { asRollback(a, d) }},
		{name: "rollback-without-rollback-flag", desc: "rollback answer whose payload has no rollback: true", expect: agent.RefuseMalformed, verifier: Accept, action: protov1.ActionRollback},
		{name: "answer-without-assignment", desc: "install answer without an assignment", expect: agent.RefuseMalformed, noAssignment: true},
		{name: "answer-rollout-not-namespaced", desc: "the answer's rollout is not namespace/name", expect: agent.RefuseMalformed, verifier: Accept, rollout: "sensor-2.1.0-eu"},

		// Payload parsing (signed correctly; refused after the signature).
		{name: "commit-and-rollback", desc: "payload with both commit: true and rollback: true", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed, action: protov1.ActionCommit,
			mod: asCommit, raw: func(p []byte) []byte { return append(p[:len(p)-1], []byte(`,"rollback":true}`)...) }},
		{name: "unsupported-suite", desc: "suite otaflow-enc/v2", expect: agent.RefuseSuite, verifier: agent.RefuseMalformed,
			raw: setRaw("suite", `"otaflow-enc/v2"`)},
		{name: "unknown-field", desc: "an extra top-level field \"priority\"", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: func(p []byte) []byte { return append(p[:len(p)-1], []byte(`,"priority":1}`)...) }},
		{name: "field-name-case", desc: "\"DeviceID\" instead of \"deviceID\": keys match case-sensitively", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: func(p []byte) []byte { return bytes.Replace(p, []byte(`"deviceID"`), []byte(`"DeviceID"`), 1) }},
		{name: "duplicate-field", desc: "deviceID twice, the second naming sensor-00043", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: func(p []byte) []byte { return append(p[:len(p)-1], []byte(`,"deviceID":"sensor-00043"}`)...) }},
		{name: "null-field", desc: "vendorSignature is null", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: setRaw("vendorSignature", "null")},
		{name: "trailing-data", desc: "a second JSON object after the payload object", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: func(p []byte) []byte { return append(p, []byte("{}")...) }},
		{name: "not-an-object", desc: "the payload is a JSON array holding the payload object", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: func(p []byte) []byte { return append(append([]byte("["), p...), ']') }},
		{name: "payload-over-size-limit", desc: "a valid, correctly signed payload padded with spaces to 65537 bytes, one over the 64 KiB limit: refused before the signature is checked", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: func(p []byte) []byte {
				return append(p, bytes.Repeat([]byte(" "), assignment.MaxPayloadSize+1-len(p))...)
			}},
		{name: "wrapped-key-wrong-size", desc: "wrappedKey of 79 bytes for kem x25519 (80 expected)", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: func(p []byte) []byte {
				return edit(t, p, "wrappedKey", `"`+base64.StdEncoding.EncodeToString(mustHex(t, "wrapped", x.Wrapped)[:79])+`"`, false)
			}},
		{name: "unknown-kem", desc: "kem x448", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed, raw: setRaw("kem", `"x448"`)},
		{name: "digest-uppercase", desc: "plainSHA256 in uppercase hex: digests are 64 lowercase hex characters", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: setRaw("plainSHA256", `"`+strings.ToUpper(hexSum(plain))+`"`)},
		{name: "security-version-negative", desc: "securityVersion -1", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed, raw: setRaw("securityVersion", "-1")},
		{name: "security-version-too-large", desc: "securityVersion 4294967296: security versions are 32-bit (0 to 4294967295)", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed, raw: setRaw("securityVersion", "4294967296")},
		{name: "security-version-not-integer", desc: "securityVersion 5.0: integers only", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed, raw: setRaw("securityVersion", "5.0")},
		{name: "security-version-string", desc: "securityVersion \"5\": a string, not a number", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed, raw: setRaw("securityVersion", `"5"`)},
		{name: "expires-not-after-issued", desc: "expiresAt equals issuedAt", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: setRaw("expiresAt", `"`+rfc3339(t0)+`"`)},
		{name: "time-not-rfc3339", desc: "issuedAt as Unix seconds instead of an RFC 3339 string", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: setRaw("issuedAt", fmt.Sprint(t0.Unix()))},
		{name: "nonce-too-short", desc: "nonce of 14 hex characters (16 to 128 required)", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			mod: func(a *assignment.Assignment, d *deviceState) { d.Nonce = "" }, raw: setRaw("nonce", `"0123456789abcd"`)},
		{name: "blob-url-not-absolute", desc: "blobURL without scheme and host", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: setRaw("blobURL", `"/v1/blobs/`+x.BlobDigest+`"`)},
		{name: "vendor-signature-not-base64", desc: "vendorSignature is not standard base64", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: setRaw("vendorSignature", `"not base64!"`)},
		{name: "rollout-not-namespaced", desc: "the payload's (and the answer's) rollout is not namespace/name", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: setRaw("rollout", `"a/b/c"`), rollout: "a/b/c"},
	}
	// One vector per required field, removed.
	probe, err := json.Marshal(base())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range splitObject(t, probe) {
		key := f.key
		cases = append(cases, asgCase{name: "missing-" + key, desc: "required field " + key + " absent", expect: agent.RefuseMalformed, verifier: agent.RefuseMalformed,
			raw: func(p []byte) []byte { return edit(t, p, key, "", true) }})
	}

	doc := assignmentDoc{
		fileHeader: header("otaflow-conformance/v1 assignments", "docs/protocol.md \"The signed assignment\", docs/envelope.md section 3",
			"Each vector is one 200 answer of GET /v1/update (response) and what the device knows (device: its ID, KEM, the nonce its check sent or \"\" for none, its running version, its committed security floor, its clock and allowed skew). Verify response.assignment with keys[trustedKey] as the protocol requires, then apply the device's checks; the verdict must be expect. The blob fields of the payloads are placeholders; wrappedKey is 2-unwrap.json's accept vector for the payload's kem.",
			assignmentClasses...),
		Domain:         hex.EncodeToString([]byte(domain)),
		MaxPayloadSize: assignment.MaxPayloadSize,
		Keys:           map[string]keyInfo{},
	}
	for name, k := range keys {
		doc.Keys[name] = k.info
	}
	for _, c := range cases {
		a, d := base(), baseDevice()
		if c.mod != nil {
			c.mod(&a, &d)
		}
		trusted := c.key
		if trusted == "" {
			trusted = "ed25519"
		}
		signWith := c.signWith
		if signWith == "" {
			signWith = trusted
		}
		k := keys[signWith]
		action := c.action
		if action == "" {
			action = protov1.ActionInstall
		}
		v := assignmentVector{Name: c.name, Description: c.desc, Expect: c.expect, VerifierExpect: c.verifier, TrustedKey: trusted, Device: d,
			Response: protov1.UpdateResponse{Action: action, Rollout: a.Rollout}}
		if c.rollout != "" {
			v.Response.Rollout = c.rollout
		}
		if c.expect == Accept {
			v.VerifierExpect = Accept
			floor := d.SecurityFloor
			if action == protov1.ActionCommit {
				floor = max(floor, a.SecurityVersion)
			}
			v.SecurityFloorAfter = &floor
		}
		if !c.noAssignment {
			var s assignment.Signed
			if c.raw == nil && c.prefix == nil {
				signer, err := assignment.NewSigner(k.signer)
				if err != nil {
					t.Fatal(err)
				}
				if s, err = signer.Sign(a); err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				// signRaw is the server's signing, byte for byte.
				if !bytes.Equal(k.signRaw(t, domain, s.Payload), s.Signature) {
					t.Fatalf("%s: signRaw differs from Signer.Sign", c.name)
				}
				if !bytes.Equal(joinObject(splitObject(t, s.Payload)), s.Payload) {
					t.Fatal("splitObject/joinObject do not round-trip the server's payload")
				}
			} else {
				payload, err := json.Marshal(a)
				if err != nil {
					t.Fatal(err)
				}
				if c.raw != nil {
					payload = c.raw(payload)
				}
				prefix := domain
				if c.prefix != nil {
					prefix = *c.prefix
				}
				s = assignment.Signed{Payload: payload, Signature: k.signRaw(t, prefix, payload), KeyID: k.info.KeyID}
			}
			if c.sig != nil {
				c.sig(&s)
			}
			v.Response.Assignment = &s
		}
		doc.Vectors = append(doc.Vectors, v)
	}
	return doc
}

// trustedVerifier checks a key of the file (public key, PKIX, key ID,
// private half) and returns a Verifier for it.
func trustedVerifier(t *testing.T, k keyInfo) *assignment.Verifier {
	t.Helper()
	var pub crypto.PublicKey
	raw := mustHex(t, "publicKey", k.PublicKey)
	switch k.Alg {
	case "ed25519":
		pub = ed25519.PublicKey(raw)
		if !bytes.Equal(ed25519.NewKeyFromSeed(mustHex(t, "privateKey", k.PrivateKey)).Public().(ed25519.PublicKey), raw) {
			t.Fatal("privateKey does not match publicKey")
		}
	case "ecdsa-p256-sha256":
		p, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			t.Fatal(err)
		}
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), mustHex(t, "privateKey", k.PrivateKey))
		if err != nil || !priv.PublicKey.Equal(p) {
			t.Fatalf("privateKey does not match publicKey: %v", err)
		}
		pub = p
	default:
		t.Fatalf("unknown alg %q", k.Alg)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(der) != k.PKIX || hexSum(der) != k.KeyID {
		t.Fatal("pkix or keyID do not match publicKey")
	}
	v, err := assignment.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyID() != k.KeyID {
		t.Fatalf("Verifier.KeyID = %s, want %s", v.KeyID(), k.KeyID)
	}
	return v
}

func verifierClass(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return Accept
	}
	var got []string
	for _, c := range verifierClasses {
		if errors.Is(err, c.err) {
			got = append(got, c.name)
		}
	}
	if len(got) != 1 {
		t.Fatalf("error %v matches classes %v", err, got)
	}
	return got[0]
}

// TestAssignments checks every vector of 3-assignments.json twice: with
// the agent's ParseUpdateResponse and VerifyAssignment (the verdict, expect)
// and with protocol/v1/assignment's Verifier.Verify (verifierExpect).
func TestAssignments(t *testing.T) {
	var f assignmentDoc
	load(t, assignmentsFile, &f)
	if f.Domain != hex.EncodeToString([]byte(domain)) || f.MaxPayloadSize != assignment.MaxPayloadSize {
		t.Fatal("domain or maxPayloadSize differ from protocol/v1/assignment")
	}
	verifiers := map[string]*assignment.Verifier{}
	for name, k := range f.Keys {
		verifiers[name] = trustedVerifier(t, k)
	}
	known := map[string]bool{}
	for _, c := range assignmentClasses {
		known[c.Expect] = true
	}
	var names, descs, expects []string
	for _, v := range f.Vectors {
		names, descs, expects = append(names, v.Name), append(descs, v.Description), append(expects, v.Expect)
		t.Run(v.Name, func(t *testing.T) {
			if !known[v.Expect] {
				t.Fatalf("unknown expect %q", v.Expect)
			}
			ver, ok := verifiers[v.TrustedKey]
			if !ok {
				t.Fatalf("no key %q", v.TrustedKey)
			}
			now, err := time.Parse(time.RFC3339, v.Device.Now)
			if err != nil {
				t.Fatal(err)
			}
			skew := time.Duration(v.Device.ClockSkewSeconds) * time.Second
			body, err := json.Marshal(v.Response)
			if err != nil {
				t.Fatal(err)
			}

			// The device: the agent's own checks.
			got, floor := Accept, v.Device.SecurityFloor
			u, err := agent.ParseUpdateResponse(body)
			if err == nil {
				var a assignment.Assignment
				a, err = agent.VerifyAssignment(ver, u, agent.Expectation{
					DeviceID: v.Device.DeviceID, KEM: v.Device.KEM, Nonce: v.Device.Nonce, Version: v.Device.RunningVersion,
					SecurityFloor: v.Device.SecurityFloor, Now: now, Skew: skew,
				})
				if err == nil && u.Action == protov1.ActionCommit {
					floor = max(floor, a.SecurityVersion)
				}
			}
			if err != nil {
				r, ok := agent.AsRefusal(err)
				if !ok {
					t.Fatalf("agent error is not a Refusal: %v", err)
				}
				got = r.Code
			}
			if got != v.Expect {
				t.Errorf("agent verdict %s (%v), want %s", got, err, v.Expect)
			}
			if (v.Expect == Accept) != (v.SecurityFloorAfter != nil) || (v.SecurityFloorAfter != nil && *v.SecurityFloorAfter != floor) {
				t.Errorf("security floor after the answer is %d, vector says %v", floor, v.SecurityFloorAfter)
			}

			// protocol/v1/assignment's Verifier on the signed assignment alone.
			if v.Response.Assignment == nil {
				if v.VerifierExpect != "" {
					t.Error("verifierExpect without an assignment")
				}
				return
			}
			_, verr := ver.Verify(*v.Response.Assignment, v.Device.DeviceID, now, skew)
			vgot := verifierClass(t, verr)
			if vgot != v.VerifierExpect {
				t.Errorf("Verifier.Verify verdict %s (%v), want %s", vgot, verr, v.VerifierExpect)
			}
			// What the verifier refuses, the device refuses too.
			if vgot != Accept && got == Accept {
				t.Errorf("the agent accepts what protocol/v1/assignment refuses (%v)", verr)
			}
		})
	}
	checkNames(t, assignmentsFile, names, descs)
	t.Logf("%s: %d vectors %v", assignmentsFile, len(f.Vectors), count(expects))
}
