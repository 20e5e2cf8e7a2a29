package conformance

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

const (
	keySetsFile  = "6-keysets.json"
	keySetDomain = "otaflow-keyset/v1\n"
)

// Verdicts of a key set update (assignment.Trust.Update) and of an
// assignment checked against a set of trusted keys (Trust.Verify).
var keySetClasses = []class{
	{Accept, "key set: the device now trusts exactly after.keys at after.serial (the same set at the same serial changes nothing); assignment: it verifies"},
	{"untrusted-signing-key", "no signature names a key the device trusts (key set), or keyID names no trusted key (assignment): the device reports untrusted-signing-key (ErrUntrustedKey)"},
	{"bad-signature", "a signature by a trusted key, or by a listed key, does not verify over the domain ‖ payload (ErrBadSignature)"},
	{"malformed", "the payload does not parse strictly or is invalid, or the signatures are not exactly one per listed key (ErrMalformed)"},
	{"stale", "the serial is below the trusted serial, or equal to it with other keys: a replay or a rollback (ErrStaleKeySet)"},
}

var keySetErrors = []struct {
	name string
	err  error
}{
	{"untrusted-signing-key", assignment.ErrUntrustedKey},
	{"bad-signature", assignment.ErrBadSignature},
	{"malformed", assignment.ErrMalformed},
	{"stale", assignment.ErrStaleKeySet},
	{"expired", assignment.ErrExpired},
	{"wrong-device", assignment.ErrWrongDevice},
	{"not-yet-valid", assignment.ErrNotYetValid},
}

type keySetDoc struct {
	fileHeader
	Domain         string             `json:"domain"`
	MaxPayloadSize int                `json:"maxPayloadSize"`
	MaxKeys        int                `json:"maxKeys"`
	Keys           map[string]keyInfo `json:"keys"`
	Vectors        []keySetVector     `json:"vectors"`
}

// trustState is what a device trusts: keys (names of the file's keys) and
// the serial of the key set they came from.
type trustState struct {
	Serial int64    `json:"serial"`
	Keys   []string `json:"keys"`
}

type keySetVector struct {
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Expect      string     `json:"expect"`
	Trusted     trustState `json:"trusted"`
	// KeySet is a body of GET /v1/keys; Assignment a signed assignment
	// (one of them), checked for device sensor-00042 at Now.
	KeySet     *protov1.KeySetResponse `json:"keySet,omitempty"`
	Assignment *assignment.Signed      `json:"assignment,omitempty"`
	DeviceID   string                  `json:"deviceID,omitempty"`
	Now        string                  `json:"now,omitempty"`
	After      *trustState             `json:"after,omitempty"`
}

func genKeySets(t *testing.T) any {
	keys := serverKeys(t)
	names := []string{"ed25519", "p256", "other-ed25519"}
	signer := func(name string) *assignment.Signer {
		s, err := assignment.NewSigner(keys[name].signer)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	entry := func(name string) assignment.PublicKey {
		e, err := assignment.PublicKeyOf(keys[name].signer.Public())
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	// set is the key set of serial with the named keys, ordered by key ID.
	set := func(serial int64, ks ...string) assignment.KeySet {
		out := assignment.KeySet{Serial: serial}
		for _, k := range ks {
			out.Keys = append(out.Keys, entry(k))
		}
		slices.SortFunc(out.Keys, func(a, b assignment.PublicKey) int { return strings.Compare(a.KeyID, b.KeyID) })
		return out
	}
	encode := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// signed signs payload with the named keys, in that order.
	signed := func(payload []byte, by ...string) *protov1.KeySetResponse {
		out := &protov1.KeySetResponse{Payload: payload}
		for _, k := range by {
			out.Signatures = append(out.Signatures, assignment.KeySignature{KeyID: keys[k].info.KeyID, Signature: keys[k].signRaw(t, keySetDomain, payload)})
		}
		return out
	}
	// published is what the server publishes: SignKeySet with every key.
	published := func(serial int64, ks ...string) *protov1.KeySetResponse {
		var ss []*assignment.Signer
		for _, k := range ks {
			ss = append(ss, signer(k))
		}
		doc, err := assignment.SignKeySet(serial, ss...)
		if err != nil {
			t.Fatal(err)
		}
		// signRaw is the server's signing, byte for byte.
		if want := signed(doc.Payload, sortedByID(keys, ks)...); !slicesEqualSigs(want.Signatures, doc.Signatures) || !bytes.Equal(encode(set(serial, ks...)), doc.Payload) {
			t.Fatal("SignKeySet differs from the generator's encoding")
		}
		return &doc
	}
	editSet := func(ks assignment.KeySet, f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(encode(ks), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		return encode(m)
	}
	keyAt := func(m map[string]any, i int) map[string]any { return m["keys"].([]any)[i].(map[string]any) }
	tamper := func(d *protov1.KeySetResponse, f func(d *protov1.KeySetResponse)) *protov1.KeySetResponse {
		c := *d
		c.Signatures = slices.Clone(d.Signatures)
		f(&c)
		return &c
	}
	sigOf := func(d *protov1.KeySetResponse, k string) int {
		return slices.IndexFunc(d.Signatures, func(s assignment.KeySignature) bool { return s.KeyID == keys[k].info.KeyID })
	}
	trust := func(serial int64, ks ...string) trustState { return trustState{Serial: serial, Keys: ks} }
	after := func(serial int64, ks ...string) *trustState { s := trust(serial, ks...); return &s }
	add := published(2, "ed25519", "p256")
	twoPayload := add.Payload
	two := set(2, "ed25519", "p256")

	vectors := []keySetVector{
		// Following a rotation.
		{Name: "add-key", Description: "the server publishes a new key beside the one the provisioned device trusts", Expect: Accept,
			Trusted: trust(0, "ed25519"), KeySet: add, After: after(2, "ed25519", "p256")},
		{Name: "retire-key", Description: "the old key leaves the set: the device forgets it", Expect: Accept,
			Trusted: trust(2, "ed25519", "p256"), KeySet: published(3, "p256"), After: after(3, "p256")},
		{Name: "same-set-again", Description: "the set the device holds, fetched again: nothing changes", Expect: Accept,
			Trusted: trust(2, "ed25519", "p256"), KeySet: add, After: after(2, "ed25519", "p256")},
		{Name: "trusted-by-the-new-key", Description: "a device that trusts only the ECDSA key accepts a set it signed", Expect: Accept,
			Trusted: trust(0, "p256"), KeySet: add, After: after(2, "ed25519", "p256")},
		{Name: "signatures-in-any-order", Description: "the signatures in the other order: only the keys must be ordered", Expect: Accept,
			Trusted: trust(0, "ed25519"), KeySet: tamper(add, func(d *protov1.KeySetResponse) { slices.Reverse(d.Signatures) }), After: after(2, "ed25519", "p256")},
		{Name: "recover-with-the-old-key-published", Description: "a device that missed the rotation, after the old key was published again beside the new one", Expect: Accept,
			Trusted: trust(0, "ed25519"), KeySet: published(4, "p256", "ed25519"), After: after(4, "ed25519", "p256")},

		// Who signed.
		{Name: "missed-the-rotation", Description: "the device trusts only the retired key; the set is signed by the new key alone", Expect: "untrusted-signing-key",
			Trusted: trust(2, "ed25519"), KeySet: published(3, "p256")},
		{Name: "another-fleet", Description: "a set of another server, signed by a key the device never trusted", Expect: "untrusted-signing-key",
			Trusted: trust(0, "ed25519"), KeySet: published(1, "other-ed25519")},
		{Name: "only-an-unlisted-signer", Description: "the set of two keys, signed only by a third key", Expect: "untrusted-signing-key",
			Trusted: trust(0, "ed25519"), KeySet: signed(twoPayload, "other-ed25519")},
		{Name: "unlisted-signer", Description: "signed by both listed keys and by a third key the set does not list", Expect: "malformed",
			Trusted: trust(0, "ed25519"), KeySet: signed(twoPayload, "ed25519", "p256", "other-ed25519")},
		{Name: "listed-key-did-not-sign", Description: "the set lists two keys, only the trusted one signed (no proof of possession of the other)", Expect: "malformed",
			Trusted: trust(0, "ed25519"), KeySet: signed(twoPayload, "ed25519")},
		{Name: "signed-twice", Description: "the trusted key's signature appears twice", Expect: "malformed",
			Trusted: trust(0, "ed25519"), KeySet: signed(twoPayload, "ed25519", "p256", "ed25519")},
		{Name: "no-signature", Description: "signatures is empty", Expect: "malformed",
			Trusted: trust(0, "ed25519"), KeySet: signed(twoPayload)},

		// Signatures.
		{Name: "payload-changed-after-signing", Description: "serial changed from 2 to 7 after signing", Expect: "bad-signature",
			Trusted: trust(0, "ed25519"), KeySet: tamper(add, func(d *protov1.KeySetResponse) {
				d.Payload = bytes.Replace(d.Payload, []byte(`"serial":2`), []byte(`"serial":7`), 1)
			})},
		{Name: "trusted-signature-flipped", Description: "one bit of the trusted key's signature flipped", Expect: "bad-signature",
			Trusted: trust(0, "ed25519"), KeySet: tamper(add, func(d *protov1.KeySetResponse) {
				i := sigOf(d, "ed25519")
				d.Signatures[i].Signature = flip(d.Signatures[i].Signature, 7, 0x01)
			})},
		{Name: "new-key-signature-flipped", Description: "the trusted key's signature verifies, the new key's does not", Expect: "bad-signature",
			Trusted: trust(0, "ed25519"), KeySet: tamper(add, func(d *protov1.KeySetResponse) {
				i := sigOf(d, "p256")
				d.Signatures[i].Signature = flip(d.Signatures[i].Signature, len(d.Signatures[i].Signature)-1, 0x01)
			})},
		{Name: "assignment-domain", Description: "signatures over \"otaflow-assignment/v1\\n\" ‖ payload: an assignment signature is never a key set signature", Expect: "bad-signature",
			Trusted: trust(0, "ed25519"), KeySet: &protov1.KeySetResponse{Payload: twoPayload, Signatures: []assignment.KeySignature{
				{KeyID: keys["ed25519"].info.KeyID, Signature: keys["ed25519"].signRaw(t, domain, twoPayload)},
				{KeyID: keys["p256"].info.KeyID, Signature: keys["p256"].signRaw(t, domain, twoPayload)},
			}}},

		// Serial.
		{Name: "replayed-older-set", Description: "the set of serial 2, replayed to a device at serial 3: it would bring the retired key back", Expect: "stale",
			Trusted: trust(3, "p256"), KeySet: add},
		{Name: "same-serial-other-keys", Description: "serial 2 again, with other keys than the device accepted at 2", Expect: "stale",
			Trusted: trust(2, "ed25519", "p256"), KeySet: published(2, "p256")},
	}

	// Payloads signed correctly by every key they list, refused after the
	// signature.
	for _, c := range []struct {
		name, desc string
		payload    []byte
	}{
		{"unknown-field", "an extra field \"current\"", editSet(two, func(m map[string]any) { m["current"] = keys["p256"].info.KeyID })},
		{"unknown-key-field", "an extra field in a key entry", editSet(two, func(m map[string]any) { keyAt(m, 0)["notBefore"] = "2026-01-01T00:00:00Z" })},
		{"field-name-case", "\"Serial\" instead of \"serial\"", bytes.Replace(encode(two), []byte(`"serial"`), []byte(`"Serial"`), 1)},
		{"duplicate-field", "serial twice", bytes.Replace(encode(two), []byte(`{"serial":2,`), []byte(`{"serial":2,"serial":9,`), 1)},
		{"null-field", "keys is null", editSet(two, func(m map[string]any) { m["keys"] = nil })},
		{"trailing-data", "a second JSON value after the object", append(encode(two), []byte("{}")...)},
		{"missing-serial", "serial absent", editSet(two, func(m map[string]any) { delete(m, "serial") })},
		{"serial-zero", "serial 0: serials start at 1", editSet(two, func(m map[string]any) { m["serial"] = 0 })},
		{"serial-beyond-2-53", "serial 9007199254740992", bytes.Replace(encode(two), []byte(`"serial":2`), []byte(`"serial":9007199254740992`), 1)},
		{"serial-not-integer", "serial 2.0", bytes.Replace(encode(two), []byte(`"serial":2`), []byte(`"serial":2.0`), 1)},
		{"no-keys", "keys is empty", editSet(two, func(m map[string]any) { m["keys"] = []any{} })},
		{"keys-unordered", "the keys not ordered by keyID", editSet(two, func(m map[string]any) { ks := m["keys"].([]any); ks[0], ks[1] = ks[1], ks[0] })},
		{"key-listed-twice", "the first key listed again", editSet(two, func(m map[string]any) { m["keys"] = append(m["keys"].([]any), keyAt(m, 0)) })},
		{"key-id-mismatch", "a keyID that is not the SHA-256 of its publicKey", editSet(two, func(m map[string]any) { keyAt(m, 0)["keyID"] = strings.Repeat("ab", 32) })},
		{"algorithm-mismatch", "both keys with the other's algorithm", editSet(two, func(m map[string]any) {
			a, b := keyAt(m, 0), keyAt(m, 1)
			a["algorithm"], b["algorithm"] = b["algorithm"], a["algorithm"]
		})},
		{"public-key-not-pkix", "a publicKey that is the raw key, not PKIX DER", editSet(two, func(m map[string]any) {
			for i := range 2 {
				k := keyAt(m, i)
				if k["algorithm"] == assignment.AlgEd25519 {
					k["publicKey"] = mustHex(t, "publicKey", keys["ed25519"].info.PublicKey)
				}
			}
		})},
	} {
		vectors = append(vectors, keySetVector{Name: c.name, Description: c.desc + "; signed by both keys of the set", Expect: "malformed",
			Trusted: trust(0, "ed25519"), KeySet: signed(c.payload, "ed25519", "p256")})
	}

	// Assignments checked against a set of trusted keys.
	x := readKeywrapVectors(t)["x25519"]
	asg := assignment.Assignment{
		DeviceID: x.DeviceID, Rollout: "fleet/sensor-2.1.0-eu", Release: "fleet/sensor-2.1.0", Version: "2.1.0", SecurityVersion: 5,
		PlainSHA256: hexSum([]byte("plain")), PlainSize: 3000, EncryptedSHA256: x.BlobDigest, EncryptedSize: 3000 + 58 + 16,
		Suite: "otaflow-enc/v1", BlobURL: "https://ota.example.com/v1/blobs/" + x.BlobDigest, KEM: "x25519", WrappedKey: mustHex(t, "wrapped", x.Wrapped),
		Nonce: deviceNonce, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour),
	}
	signAsg := func(k string) *assignment.Signed {
		s, err := signer(k).Sign(asg)
		if err != nil {
			t.Fatal(err)
		}
		return &s
	}
	claim := func(s *assignment.Signed, k string) *assignment.Signed {
		c := *s
		c.KeyID = keys[k].info.KeyID
		return &c
	}
	now := rfc3339(t0.Add(time.Minute))
	for _, c := range []keySetVector{
		{Name: "assignment-by-the-old-key", Description: "an assignment signed by the first of two trusted keys", Expect: Accept, Assignment: signAsg("ed25519")},
		{Name: "assignment-by-the-new-key", Description: "an assignment signed by the second of two trusted keys", Expect: Accept, Assignment: signAsg("p256")},
		{Name: "assignment-by-an-untrusted-key", Description: "signed by a key the device does not trust, with that key's keyID: follow the server's key set, then report untrusted-signing-key naming it", Expect: "untrusted-signing-key", Assignment: signAsg("other-ed25519")},
		{Name: "assignment-claiming-a-trusted-key", Description: "signed by an untrusted key, with a trusted key's keyID", Expect: "bad-signature", Assignment: claim(signAsg("other-ed25519"), "p256")},
		{Name: "assignment-under-another-trusted-id", Description: "signed by one trusted key, naming the other: keyID selects the key", Expect: "bad-signature", Assignment: claim(signAsg("ed25519"), "p256")},
	} {
		c.Trusted, c.DeviceID, c.Now = trust(2, "ed25519", "p256"), x.DeviceID, now
		vectors = append(vectors, c)
	}

	doc := keySetDoc{
		fileHeader: header("otaflow-conformance/v1 key sets", "docs/protocol.md \"Assignment keys and their rotation\"",
			"Each vector is what a device trusts (trusted: keys of this file and the serial they came from, 0 for provisioned keys) and either a body of GET /v1/keys (keySet, exactly as on the wire) to update that trust with, or a signed assignment (assignment) for deviceID at now (clock skew 300 s), to verify with the trusted key its keyID names (then as 3-assignments.json). The verdict must be expect; after is the trust an accepted key set leaves.",
			keySetClasses...),
		Domain:         hex.EncodeToString([]byte(keySetDomain)),
		MaxPayloadSize: assignment.MaxKeySetSize,
		MaxKeys:        assignment.MaxKeySetKeys,
		Keys:           map[string]keyInfo{},
		Vectors:        vectors,
	}
	for _, n := range names {
		doc.Keys[n] = keys[n].info
	}
	return doc
}

func sortedByID(keys map[string]serverKey, names []string) []string {
	out := slices.Clone(names)
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(keys[a].info.KeyID, keys[b].info.KeyID) })
	return out
}

// slicesEqualSigs compares signatures; ECDSA ones are deterministic here
// (RFC 6979), so equal bytes are expected.
func slicesEqualSigs(a, b []assignment.KeySignature) bool {
	return slices.EqualFunc(a, b, func(x, y assignment.KeySignature) bool {
		return x.KeyID == y.KeyID && bytes.Equal(x.Signature, y.Signature)
	})
}

func keySetClass(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return Accept
	}
	var got []string
	for _, c := range keySetErrors {
		if errors.Is(err, c.err) {
			got = append(got, c.name)
		}
	}
	if len(got) != 1 {
		t.Fatalf("error %v matches classes %v", err, got)
	}
	return got[0]
}

// TestKeySets checks every vector of 6-keysets.json with
// protocol/v1/assignment's Trust: Update for key sets, Verify for
// assignments.
func TestKeySets(t *testing.T) {
	var f keySetDoc
	load(t, keySetsFile, &f)
	if f.Domain != hex.EncodeToString([]byte(keySetDomain)) || f.MaxPayloadSize != assignment.MaxKeySetSize || f.MaxKeys != assignment.MaxKeySetKeys {
		t.Fatal("domain or limits differ from protocol/v1/assignment")
	}
	entries := map[string]assignment.PublicKey{}
	for name, k := range f.Keys {
		trustedVerifier(t, k) // checks the key's fields
		der := mustHex(t, "pkix", k.PKIX)
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			t.Fatal(err)
		}
		e, err := assignment.PublicKeyOf(pub)
		if err != nil || e.KeyID != k.KeyID {
			t.Fatalf("key %s: %v", name, err)
		}
		entries[name] = e
	}
	trustOf := func(t *testing.T, s trustState) *assignment.Trust {
		ks := assignment.KeySet{Serial: s.Serial}
		for _, n := range s.Keys {
			e, ok := entries[n]
			if !ok {
				t.Fatalf("no key %q", n)
			}
			ks.Keys = append(ks.Keys, e)
		}
		tr, err := assignment.NewTrust(ks)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	known := map[string]bool{}
	for _, c := range keySetClasses {
		known[c.Expect] = true
	}
	var names, descs, expects []string
	for _, v := range f.Vectors {
		names, descs, expects = append(names, v.Name), append(descs, v.Description), append(expects, v.Expect)
		t.Run(v.Name, func(t *testing.T) {
			if !known[v.Expect] || (v.KeySet == nil) == (v.Assignment == nil) {
				t.Fatalf("expect %q, keySet %t, assignment %t", v.Expect, v.KeySet != nil, v.Assignment != nil)
			}
			tr := trustOf(t, v.Trusted)
			if v.Assignment != nil {
				now, err := time.Parse(time.RFC3339, v.Now)
				if err != nil {
					t.Fatal(err)
				}
				_, err = tr.Verify(*v.Assignment, v.DeviceID, now, 5*time.Minute)
				if got := keySetClass(t, err); got != v.Expect {
					t.Errorf("verdict %s (%v), want %s", got, err, v.Expect)
				}
				return
			}
			// The body as a device receives it.
			body, err := json.Marshal(v.KeySet)
			if err != nil {
				t.Fatal(err)
			}
			var wire protov1.KeySetResponse
			if err := json.Unmarshal(body, &wire); err != nil {
				t.Fatal(err)
			}
			next, err := tr.Update(wire)
			if got := keySetClass(t, err); got != v.Expect {
				t.Fatalf("verdict %s (%v), want %s", got, err, v.Expect)
			}
			if (v.Expect == Accept) != (v.After != nil) {
				t.Fatal("after is given exactly for accept vectors")
			}
			if v.After != nil {
				want := trustOf(t, *v.After)
				if next.Serial() != want.Serial() || !slices.Equal(next.KeyIDs(), want.KeyIDs()) {
					t.Errorf("after: serial %d keys %v, want %d %v", next.Serial(), next.KeyIDs(), want.Serial(), want.KeyIDs())
				}
			}
		})
	}
	checkNames(t, keySetsFile, names, descs)
	t.Logf("%s: %d vectors %v", keySetsFile, len(f.Vectors), count(expects))
}
