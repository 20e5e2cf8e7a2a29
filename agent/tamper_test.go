package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/contract"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
)

// The tamper matrix drives the agent's whole update path (enrollment,
// check, assignment verification, key unwrap, resumable download, chunk
// decryption, plaintext digest, vendor signature, install) against an
// in-memory OTA server that serves a mutated update. The attacker is
// anyone between the vendor and the device: the network (which cannot
// sign assignments), and a compromised OTA server or cluster that holds
// the assignment signing key and every content key but not the vendor's
// signing key. Whatever is mutated, the agent must install nothing and
// report a failure with a reason.

const (
	tmDevice  = "dev-tamper"
	tmRollout = "fleet/ro"
	tmBase    = "https://ota.test"
	tmFloor   = 5
	tmSecVer  = 7
)

// tamperWorld holds the legitimate release and every key.
type tamperWorld struct {
	serverKey   ed25519.PrivateKey // the OTA server's assignment key
	serverPEM   []byte
	serverKeyID string
	vendorKey   *ecdsa.PrivateKey // the firmware vendor's key (never in the cluster)
	vendorPEM   []byte
	evilKey     *ecdsa.PrivateKey // an attacker's signing key
	evilEd      ed25519.PrivateKey

	image, oldImage []byte
	vendorSig       string // vendor signature over image
	oldVendorSig    string // vendor signature over oldImage
	contentKey      []byte
	blob            []byte
	oldKey, oldBlob []byte
}

// mustT fails tb on err; tb may be nil where err cannot happen.
func mustT(tb testing.TB, err error) {
	if err != nil {
		tb.Helper()
		tb.Fatal(err)
	}
}

// fill fills b from rng (math/rand/v2 has no Read).
func fill(rng *mrand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

func pkixPEM(tb testing.TB, pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	mustT(tb, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func vendorSign(tb testing.TB, k *ecdsa.PrivateKey, img []byte) string {
	d := sha256.Sum256(img)
	sig, err := ecdsa.SignASN1(rand.Reader, k, d[:])
	mustT(tb, err)
	return base64.StdEncoding.EncodeToString(sig)
}

// encryptSmall encrypts with 1 KiB chunks so a few KiB make several chunks.
func encryptSmall(tb testing.TB, img, key []byte) []byte {
	h, err := envelope.NewHeader(key, 10)
	mustT(tb, err)
	var out bytes.Buffer
	_, err = envelope.EncryptWithHeader(&out, bytes.NewReader(img), key, h)
	mustT(tb, err)
	return out.Bytes()
}

func newTamperWorld(tb testing.TB, rng *mrand.Rand) *tamperWorld {
	w := &tamperWorld{}
	seed := make([]byte, ed25519.SeedSize)
	fill(rng, seed)
	w.serverKey = ed25519.NewKeyFromSeed(seed)
	w.serverPEM = pkixPEM(tb, w.serverKey.Public())
	v, err := assignment.NewVerifier(w.serverKey.Public())
	mustT(tb, err)
	w.serverKeyID = v.KeyID()
	w.vendorKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mustT(tb, err)
	w.vendorPEM = pkixPEM(tb, &w.vendorKey.PublicKey)
	w.evilKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mustT(tb, err)
	fill(rng, seed)
	w.evilEd = ed25519.NewKeyFromSeed(seed)

	w.image = make([]byte, 3*1024+517) // four chunks, the last one short
	fill(rng, w.image)
	w.oldImage = make([]byte, 2*1024+9)
	fill(rng, w.oldImage)
	w.vendorSig = vendorSign(tb, w.vendorKey, w.image)
	w.oldVendorSig = vendorSign(tb, w.vendorKey, w.oldImage)
	w.contentKey, err = envelope.NewKey()
	mustT(tb, err)
	w.blob = encryptSmall(tb, w.image, w.contentKey)
	w.oldKey, _ = envelope.NewKey()
	w.oldBlob = encryptSmall(tb, w.oldImage, w.oldKey)
	return w
}

// offer is what the in-memory server answers with. The zero edits serve
// the legitimate release.
type offer struct {
	action  string // answer action (install)
	rollout string // answer rollout
	blob    []byte // served bytes
	// The content key that is wrapped, for which device and blob digest.
	key      []byte
	wrapFor  string
	wrapBlob []byte
	// edit changes the assignment before it is signed (a compromised
	// server signs whatever it likes).
	edit func(a *assignment.Assignment)
	// editPayload changes the serialized payload before signing.
	editPayload func(p []byte) []byte
	// sign signs the message; nil uses the OTA server's key.
	sign func(msg []byte) []byte
	// editSigned changes the signed assignment after signing (what a
	// network attacker without the key can do).
	editSigned func(s *assignment.Signed)
}

func (w *tamperWorld) legit() *offer {
	return &offer{action: protov1.ActionInstall, rollout: tmRollout, blob: w.blob, key: w.contentKey, wrapFor: tmDevice, wrapBlob: w.blob}
}

// tamperServer is protocol v1 in memory: enrollment, update, blob (with
// Range) and status.
type tamperServer struct {
	t      testing.TB
	w      *tamperWorld
	o      *offer
	now    time.Time
	mu     sync.Mutex
	pub    []byte
	served int
	// reports received, in order
	reports []protov1.StatusReport
}

func jsonResp(status int, v any) *http.Response {
	b, _ := json.Marshal(v)
	h := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(b)), ContentLength: int64(len(b))}
}

// tampered reports whether o edits the assignment, which may take the
// answer off the contract on purpose (a structurally damaged payload, a
// suite that does not exist).
func (o *offer) tampered() bool {
	return o.edit != nil || o.editPayload != nil || o.editSigned != nil
}

func (s *tamperServer) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.URL.Path == "/v1/enroll":
		var req protov1.EnrollRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return jsonResp(400, protov1.Error{Code: "malformed_json", Message: err.Error()}), nil
		}
		s.pub, _ = base64.StdEncoding.DecodeString(req.PublicKey)
		return jsonResp(201, sealedAnswer(s.t, req, strings.Repeat("t", 43), s.w.serverKeyID)), nil
	case r.URL.Path == "/v1/info":
		// A server of revision 3: no key set to follow.
		return jsonResp(200, protov1.Info{Protocol: protov1.Name, Revision: 3, Features: []string{protov1.FeatureCommit, protov1.FeatureBoot, protov1.FeatureNonce},
			AssignmentKeyIDs: []string{s.w.serverKeyID}}), nil
	case r.URL.Path == "/v1/update":
		resp := jsonResp(200, s.answer(r.URL.Query().Get("nonce")))
		if s.o.tampered() {
			contract.ExemptResponse(resp.Header, "the tamper case edits the assignment")
		}
		return resp, nil
	case strings.HasPrefix(r.URL.Path, "/v1/blobs/"):
		s.served++
		b := s.o.blob
		start := 0
		status := 200
		if rg := r.Header.Get("Range"); rg != "" {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
			if err != nil || n > len(b) {
				// As net/http's file server answers it.
				msg := "invalid range: failed to overlap\n"
				h := http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Range": {fmt.Sprintf("bytes */%d", len(b))}}
				return &http.Response{StatusCode: 416, Header: h, Body: io.NopCloser(strings.NewReader(msg)), ContentLength: int64(len(msg))}, nil
			}
			start, status = n, 206
		}
		h := http.Header{
			"Content-Type": {"application/octet-stream"}, "Accept-Ranges": {"bytes"},
			"Etag": {`"` + strings.TrimPrefix(r.URL.Path, "/v1/blobs/") + `"`}, "Cache-Control": {"private, max-age=31536000, immutable"},
		}
		if status == 206 {
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(b)-1, len(b)))
		}
		return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(b[start:])), ContentLength: int64(len(b) - start)}, nil
	case r.URL.Path == "/v1/status":
		var rep protov1.StatusReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			return jsonResp(400, protov1.Error{Code: "malformed_json", Message: err.Error()}), nil
		}
		s.reports = append(s.reports, rep)
		return jsonResp(200, protov1.StatusResponse{State: rep.State}), nil
	}
	return jsonResp(404, protov1.Error{Code: "not_found", Message: "no such endpoint"}), nil
}

func (s *tamperServer) answer(nonce string) protov1.UpdateResponse {
	o, w := s.o, s.w
	digest := sha256.Sum256(o.wrapBlob)
	wrapped, err := keywrap.Wrap(keywrap.X25519, s.pub, o.key, digest, o.wrapFor)
	mustT(s.t, err)
	blobSum := sha256.Sum256(o.blob)
	plainSum := sha256.Sum256(w.image)
	a := assignment.Assignment{
		DeviceID: tmDevice, Rollout: tmRollout, Release: "fleet/fw-2", Version: "2.0.0", SecurityVersion: tmSecVer,
		PlainSHA256: hex.EncodeToString(plainSum[:]), PlainSize: int64(len(w.image)),
		EncryptedSHA256: hex.EncodeToString(blobSum[:]), EncryptedSize: int64(len(o.blob)),
		Suite: envelope.Suite, BlobURL: tmBase + "/v1/blobs/" + hex.EncodeToString(blobSum[:]), KEM: string(keywrap.X25519),
		WrappedKey: wrapped, VendorSignature: w.vendorSig, Nonce: nonce,
		IssuedAt: s.now.Add(-time.Minute), ExpiresAt: s.now.Add(time.Hour),
	}
	if o.edit != nil {
		o.edit(&a)
	}
	payload, err := json.Marshal(a)
	mustT(s.t, err)
	if o.editPayload != nil {
		payload = o.editPayload(payload)
	}
	msg := append([]byte("otaflow-assignment/v1\n"), payload...)
	var sig []byte
	if o.sign != nil {
		sig = o.sign(msg)
	} else {
		sig = ed25519.Sign(w.serverKey, msg)
	}
	signed := assignment.Signed{Payload: payload, Signature: sig, KeyID: w.serverKeyID}
	if o.editSigned != nil {
		o.editSigned(&signed)
	}
	return protov1.UpdateResponse{Action: o.action, Rollout: o.rollout, Assignment: &signed}
}

// countingInstaller records installs.
type countingInstaller struct{ installs []Image }

func (c *countingInstaller) Running(context.Context) (string, error) { return "", nil }
func (c *countingInstaller) Install(_ context.Context, img Image) error {
	c.installs = append(c.installs, img)
	return nil
}
func (c *countingInstaller) Confirm(context.Context, string) error { return nil }

// outcome of one agent step against an offer.
type tamperOutcome struct {
	installs []Image
	reports  []protov1.StatusReport
	refusals []Event
	err      error
	work     *Work
}

func runOffer(tb testing.TB, w *tamperWorld, o *offer, now time.Time) tamperOutcome {
	srv := &tamperServer{t: tb, w: w, o: o, now: now}
	inst := &countingInstaller{}
	var events []Event
	a, err := New(Config{
		ServerURL: tmBase, DeviceID: tmDevice, DeviceType: "sensor-v1", BootstrapToken: "boot",
		AssignmentKeyPEM: w.serverPEM, VendorKeysPEM: [][]byte{w.vendorPEM},
		HTTPClient: contractClient(tb, srv), Store: NewMemStore(), Installer: inst,
		Version: "1.0.0", SecurityFloor: tmFloor, Clock: func() time.Time { return now },
		BootID: func() string { return "boot-1" }, Reboot: func(context.Context) error { return nil },
		OnEvent: func(e Event) {
			if e.Kind == EventRefusal {
				events = append(events, e)
			}
		},
	})
	mustT(tb, err)
	_, err = a.Step(context.Background())
	st := a.State()
	return tamperOutcome{installs: inst.installs, reports: srv.reports, refusals: events, err: err, work: st.Work}
}

func flipBit(rng *mrand.Rand, b []byte, from, to int) []byte {
	out := bytes.Clone(b)
	i := from + rng.IntN(to-from)
	out[i] ^= 1 << rng.IntN(8)
	return out
}

// tamperClass is one kind of mutation and the refusal codes it may cause.
type tamperClass struct {
	name  string
	codes []string
	make  func(rng *mrand.Rand, w *tamperWorld) *offer
}

func tamperClasses() []tamperClass {
	hs := envelope.HeaderSize
	resign := func(edit func(rng *mrand.Rand, a *assignment.Assignment)) func(*mrand.Rand, *tamperWorld) *offer {
		return func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.edit = func(a *assignment.Assignment) { edit(rng, a) }
			return o
		}
	}
	// attackerImage is a compromised cluster's own image, encrypted under a
	// fresh content key, wrapped correctly for the device, with matching
	// digests and sizes, signed with the OTA server's key.
	attackerImage := func(vendorSig func(w *tamperWorld, img []byte) string) func(*mrand.Rand, *tamperWorld) *offer {
		return func(rng *mrand.Rand, w *tamperWorld) *offer {
			img := bytes.Clone(w.image)
			if rng.IntN(2) == 0 {
				img = img[:1+rng.IntN(len(img))]
			}
			img[rng.IntN(len(img))] ^= 0x80 // a backdoor
			key, _ := envelope.NewKey()
			blob := encryptSmall(nil, img, key)
			o := &offer{action: protov1.ActionInstall, rollout: tmRollout, blob: blob, key: key, wrapFor: tmDevice, wrapBlob: blob}
			sum := sha256.Sum256(img)
			sig := vendorSig(w, img)
			o.edit = func(a *assignment.Assignment) {
				a.PlainSHA256, a.PlainSize, a.VendorSignature = hex.EncodeToString(sum[:]), int64(len(img)), sig
			}
			return o
		}
	}
	fieldCase := 0
	return []tamperClass{
		{"blob-body-bitflip", []string{RefuseChunkAuth}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.blob = flipBit(rng, w.blob, hs, len(w.blob))
			o.wrapBlob = o.blob // the server even re-wraps for the tampered digest
			return o
		}},
		{"blob-body-bitflip-same-digest", []string{RefuseChunkAuth}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.blob = flipBit(rng, w.blob, hs, len(w.blob))
			o.wrapBlob = w.blob
			digest := sha256.Sum256(w.blob)
			o.edit = func(a *assignment.Assignment) { a.EncryptedSHA256 = hex.EncodeToString(digest[:]) }
			return o
		}},
		{"blob-header", []string{RefuseBlob, RefuseChunkAuth}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.blob = flipBit(rng, w.blob, 0, hs)
			o.wrapBlob = o.blob
			return o
		}},
		{"blob-chunk-swap", []string{RefuseChunkAuth}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			b := bytes.Clone(w.blob)
			cs := 1024 + 16
			i := rng.IntN(2)
			j := i + 1 + rng.IntN(2-i)
			ci, cj := b[hs+i*cs:hs+(i+1)*cs], b[hs+j*cs:hs+(j+1)*cs]
			tmp := bytes.Clone(ci)
			copy(ci, cj)
			copy(cj, tmp)
			o.blob, o.wrapBlob = b, b
			return o
		}},
		{"blob-truncated-resigned", []string{RefuseChunkAuth, RefuseBlob, RefuseMalformed}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.blob = bytes.Clone(w.blob[:hs+1+rng.IntN(len(w.blob)-hs-1)])
			o.wrapBlob = o.blob
			cut := int64(len(o.blob))
			o.edit = func(a *assignment.Assignment) {
				if ps, err := envelope.PlainSize(cut, 10); err == nil && rng.IntN(2) == 0 {
					a.PlainSize = ps // consistent sizes: only the last-chunk flag tells
				}
			}
			return o
		}},
		{"blob-extended-resigned", []string{RefuseChunkAuth, RefuseBlob, RefuseMalformed}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			extra := make([]byte, 1+rng.IntN(2048))
			fill(rng, extra)
			o.blob = append(bytes.Clone(w.blob), extra...)
			o.wrapBlob = o.blob
			return o
		}},
		{"wrapped-key-bitflip", []string{RefuseUnwrap}, resign(func(rng *mrand.Rand, a *assignment.Assignment) {
			a.WrappedKey = flipBit(rng, a.WrappedKey, 0, len(a.WrappedKey))
		})},
		{"wrapped-key-other-device", []string{RefuseUnwrap}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.wrapFor = "dev-" + strconv.Itoa(rng.IntN(1000))
			return o
		}},
		{"wrapped-key-other-blob", []string{RefuseUnwrap}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.wrapBlob = w.oldBlob
			return o
		}},
		{"wrapped-key-wrong-content-key", []string{RefuseBlob}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.key, _ = envelope.NewKey()
			return o
		}},
		{"assignment-payload-bitflip", []string{RefuseBadSignature}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.editSigned = func(s *assignment.Signed) { s.Payload = flipBit(rng, s.Payload, 0, len(s.Payload)) }
			return o
		}},
		{"assignment-signature-bitflip", []string{RefuseBadSignature}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.editSigned = func(s *assignment.Signed) { s.Signature = flipBit(rng, s.Signature, 0, len(s.Signature)) }
			return o
		}},
		{"assignment-key-id", []string{RefuseBadSignature}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.editSigned = func(s *assignment.Signed) {
				s.KeyID = hex.EncodeToString(flipBit(rng, []byte(s.KeyID), 0, len(s.KeyID)))
			}
			return o
		}},
		{"assignment-attacker-key", []string{RefuseBadSignature}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.sign = func(msg []byte) []byte { return ed25519.Sign(w.evilEd, msg) }
			return o
		}},
		{"assignment-field-resigned", []string{RefuseWrongDevice, RefuseExpired, RefuseNotYetValid, RefuseNonce, RefuseBelowFloor, RefuseSuite, RefuseKEM, RefuseRolloutMismatch, RefuseMalformed, RefusePlainDigest, RefuseBlob, RefuseUnwrap},
			resign(func(rng *mrand.Rand, a *assignment.Assignment) {
				fieldCase++ // every field in turn, so each appears equally often
				switch fieldCase % 12 {
				case 0:
					a.DeviceID = "dev-other"
				case 1:
					a.ExpiresAt = a.IssuedAt.Add(-6*time.Minute - time.Duration(rng.IntN(3600))*time.Second) // beyond the clock skew
					a.IssuedAt = a.ExpiresAt.Add(-time.Hour)
				case 2:
					a.IssuedAt = a.IssuedAt.Add(time.Hour + time.Duration(rng.IntN(3600))*time.Second)
					a.ExpiresAt = a.IssuedAt.Add(time.Hour)
				case 3:
					a.Nonce = strings.Repeat("ab", 16) // a replayed answer to another check
				case 4:
					a.SecurityVersion = int64(rng.IntN(tmFloor))
				case 5:
					a.Suite = "otaflow-enc/v2"
				case 6:
					a.KEM = string(keywrap.P256)
				case 7:
					a.Rollout = "fleet/other"
				case 8:
					a.Rollback = true
				case 9:
					b, _ := hex.DecodeString(a.PlainSHA256)
					b[rng.IntN(32)] ^= 1
					a.PlainSHA256 = hex.EncodeToString(b)
				case 10:
					a.PlainSize += int64(1 + rng.IntN(100))
				case 11:
					b, _ := hex.DecodeString(a.EncryptedSHA256)
					b[rng.IntN(32)] ^= 1
					a.EncryptedSHA256 = hex.EncodeToString(b)
				}
			})},
		{"assignment-payload-structure-resigned", []string{RefuseMalformed}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			// Structural damage to the payload, validly signed: the strict
			// parser refuses it before any field is trusted.
			o.editPayload = func(p []byte) []byte {
				fields := []string{"deviceID", "rollout", "release", "version", "securityVersion", "plainSHA256", "plainSize",
					"encryptedSHA256", "encryptedSize", "suite", "blobURL", "kem", "wrappedKey", "vendorSignature", "nonce", "issuedAt", "expiresAt"}
				f := fields[rng.IntN(len(fields))]
				switch rng.IntN(6) {
				case 0: // truncated
					return p[:rng.IntN(len(p)-1)]
				case 1: // trailing data
					return append(bytes.Clone(p), "x}]{,1"[rng.IntN(6)])
				case 2: // a duplicate field shadowing the signed one
					return append([]byte(`{"`+f+`":"x",`), p[1:]...)
				case 3: // an unknown field
					return append([]byte(`{"extra`+strconv.Itoa(rng.IntN(99))+`":1,`), p[1:]...)
				case 4: // a required field removed
					var m map[string]json.RawMessage
					_ = json.Unmarshal(p, &m)
					delete(m, f)
					q, _ := json.Marshal(m)
					return q
				default: // a field set to null
					var m map[string]json.RawMessage
					_ = json.Unmarshal(p, &m)
					m[f] = json.RawMessage("null")
					q, _ := json.Marshal(m)
					return q
				}
			}
			return o
		}},
		{"vendor-signature-bitflip", []string{RefuseVendorSignature}, resign(func(rng *mrand.Rand, a *assignment.Assignment) {
			raw, _ := base64.StdEncoding.DecodeString(a.VendorSignature)
			a.VendorSignature = base64.StdEncoding.EncodeToString(flipBit(rng, raw, 0, len(raw)))
		})},
		{"vendor-signature-removed", []string{RefuseVendorSignature}, resign(func(rng *mrand.Rand, a *assignment.Assignment) {
			a.VendorSignature = ""
		})},
		{"vendor-signature-garbage", []string{RefuseVendorSignature}, resign(func(rng *mrand.Rand, a *assignment.Assignment) {
			b := make([]byte, 1+rng.IntN(80))
			fill(rng, b)
			a.VendorSignature = base64.StdEncoding.EncodeToString(b)
		})},
		{"vendor-signature-other-image", []string{RefuseVendorSignature}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.edit = func(a *assignment.Assignment) { a.VendorSignature = w.oldVendorSig }
			return o
		}},
		{"cluster-unsigned-image-copied-signature", []string{RefuseVendorSignature}, attackerImage(func(w *tamperWorld, _ []byte) string { return w.vendorSig })},
		{"cluster-unsigned-image-attacker-key", []string{RefuseVendorSignature}, attackerImage(func(w *tamperWorld, img []byte) string { return vendorSign(nil, w.evilKey, img) })},
		{"cluster-unsigned-image-no-signature", []string{RefuseVendorSignature}, attackerImage(func(*tamperWorld, []byte) string { return "" })},
		{"cluster-swapped-blob-old-key", []string{RefuseBlob}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			// The blob of another release under this release's wrapped key.
			o := w.legit()
			o.blob, o.wrapBlob = w.oldBlob, w.oldBlob
			o.edit = func(a *assignment.Assignment) { a.EncryptedSize = int64(len(w.blob)) }
			return o
		}},
		{"cluster-old-image-below-floor", []string{RefuseBelowFloor}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			// A genuine, vendor-signed older image, honestly labelled: the
			// floor refuses it.
			o := &offer{action: protov1.ActionInstall, rollout: tmRollout, blob: w.oldBlob, key: w.oldKey, wrapFor: tmDevice, wrapBlob: w.oldBlob}
			sum := sha256.Sum256(w.oldImage)
			o.edit = func(a *assignment.Assignment) {
				a.PlainSHA256, a.PlainSize, a.VendorSignature = hex.EncodeToString(sum[:]), int64(len(w.oldImage)), w.oldVendorSig
				a.Version, a.SecurityVersion = "0.9.0", int64(rng.IntN(tmFloor))
			}
			return o
		}},
		{"answer-install-signed-as-commit", []string{RefuseMalformed}, resign(func(rng *mrand.Rand, a *assignment.Assignment) {
			a.Commit = true
		})},
		{"answer-rollback-of-install", []string{RefuseMalformed}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.action = protov1.ActionRollback
			return o
		}},
		{"answer-other-rollout", []string{RefuseRolloutMismatch}, func(rng *mrand.Rand, w *tamperWorld) *offer {
			o := w.legit()
			o.rollout = "fleet/ro-" + strconv.Itoa(rng.IntN(100))
			return o
		}},
	}
}

// TestTamperMatrix: at least 1000 seeded random mutations across the
// blob, its header, the wrapped key, the assignment and the vendor
// signature. None is installed; each is refused with a precise code and
// reported to the server as failed with that reason.
func TestTamperMatrix(t *testing.T) {
	seed := uint64(20260501)
	if s := testingSeed(); s != 0 {
		seed = s
	}
	rng := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := newTamperWorld(t, rng)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

	// Positive control: the untouched release installs.
	if out := runOffer(t, w, w.legit(), now); out.err != nil || len(out.installs) != 1 || len(out.refusals) != 0 {
		t.Fatalf("legitimate release not installed: err %v installs %d refusals %+v", out.err, len(out.installs), out.refusals)
	} else if !bytes.Equal([]byte(out.installs[0].SHA256), []byte(hexSum(w.image))) {
		t.Fatalf("installed %s", out.installs[0].SHA256)
	}

	classes := tamperClasses()
	const perClass = 48
	total := 0
	byClass := map[string]map[string]int{}
	for _, c := range classes {
		byClass[c.name] = map[string]int{}
		for i := range perClass {
			o := c.make(rng, w)
			out := runOffer(t, w, o, now)
			total++
			where := fmt.Sprintf("%s #%d (seed %d)", c.name, i, seed)
			if len(out.installs) != 0 {
				t.Fatalf("%s: INSTALLED %+v", where, out.installs[0])
			}
			if out.work != nil {
				t.Fatalf("%s: work kept after a refusal: %+v", where, out.work.Phase)
			}
			r, ok := AsRefusal(out.err)
			if !ok {
				t.Fatalf("%s: step error %v is not a refusal", where, out.err)
			}
			if !slices.Contains(c.codes, r.Code) {
				t.Fatalf("%s: refusal %s (%v), want one of %v", where, r.Code, r, c.codes)
			}
			if len(out.refusals) != 1 || out.refusals[0].Code != r.Code || out.refusals[0].Reason == "" {
				t.Fatalf("%s: refusal events %+v", where, out.refusals)
			}
			var failed []protov1.StatusReport
			for _, rep := range out.reports {
				switch rep.State {
				case protov1.StateFailed:
					failed = append(failed, rep)
				case protov1.StateInstalled, protov1.StateSucceeded, protov1.StateInstalling:
					t.Fatalf("%s: reported %s", where, rep.State)
				}
			}
			if len(failed) != 1 || failed[0].Reason != reportReason(r.Error()) || failed[0].Rollout != o.rollout {
				t.Fatalf("%s: failed reports %+v, want one for %s with reason %q", where, failed, o.rollout, r.Error())
			}
			byClass[c.name][r.Code]++
		}
	}
	if total < 1000 {
		t.Fatalf("only %d mutations", total)
	}
	names := make([]string, 0, len(byClass))
	for n := range byClass {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%d mutations in %d classes (seed %d), none installed, every one reported:\n", total, len(classes), seed)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-40s %v\n", n, byClass[n])
	}
	t.Log(b.String())
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// testingSeed reads OTAFLOW_TAMPER_SEED to explore other mutations.
func testingSeed() uint64 {
	v, _ := strconv.ParseUint(strings.TrimSpace(os.Getenv("OTAFLOW_TAMPER_SEED")), 10, 64)
	return v
}

// TestReplayedAssignmentRefused: an answer captured from an earlier check
// (valid signature, old nonce), and one replayed after its expiry, are
// refused and reported; nothing is installed.
func TestReplayedAssignmentRefused(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(7, 7))
	w := newTamperWorld(t, rng)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	// Record a genuine answer for one check.
	srv := &tamperServer{t: t, w: w, o: w.legit(), now: now}
	var pub []byte
	{ // enroll a device to get a key to wrap for
		k, _ := keywrap.GenerateKey(keywrap.X25519)
		pub = k.PublicKey().Bytes()
	}
	srv.pub = pub
	captured := srv.answer(strings.Repeat("11", 16))

	for name, at := range map[string]time.Time{"replayed (other nonce)": now, "replayed after expiry": now.Add(3 * time.Hour)} {
		o := w.legit()
		o.editSigned = func(s *assignment.Signed) { *s = *captured.Assignment }
		out := runOffer(t, w, o, at)
		r, ok := AsRefusal(out.err)
		if len(out.installs) != 0 || !ok {
			t.Fatalf("%s: installs %d err %v", name, len(out.installs), out.err)
		}
		// The captured answer is signed, but for another device key and
		// nonce: the nonce (or expiry) check refuses it first.
		if want := map[bool]string{true: RefuseNonce, false: RefuseExpired}[at.Equal(now)]; r.Code != want {
			t.Fatalf("%s: %s, want %s", name, r.Code, want)
		}
		if len(out.reports) != 1 || out.reports[0].State != protov1.StateFailed {
			t.Fatalf("%s: reports %+v", name, out.reports)
		}
	}
}

// TestFloorNeverLowered: the agent refuses below its floor at verification
// and again just before installing, and a lower configured floor never
// lowers a stored one.
func TestFloorNeverLowered(t *testing.T) {
	store := NewMemStore()
	rng := mrand.New(mrand.NewPCG(8, 8))
	w := newTamperWorld(t, rng)
	cfg := Config{
		ServerURL: tmBase, DeviceID: tmDevice, DeviceType: "sensor-v1", BootstrapToken: "boot",
		AssignmentKeyPEM: w.serverPEM, VendorKeysPEM: [][]byte{w.vendorPEM}, Store: store,
		Installer: &countingInstaller{}, Version: "1.0.0", SecurityFloor: 9,
	}
	if _, err := New(cfg); err != nil {
		t.Fatal(err)
	}
	cfg.SecurityFloor = 2
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.State().SecurityFloor; got != 9 {
		t.Fatalf("floor lowered to %d", got)
	}
	// Equal to the floor is allowed; one below is not.
	e := Expectation{DeviceID: tmDevice, KEM: "x25519", SecurityFloor: 9, Now: time.Now(), Skew: time.Minute}
	for sv, ok := range map[int64]bool{8: false, 9: true, 10: true} {
		srv := &tamperServer{t: t, w: w, now: e.Now, o: w.legit()}
		srv.o.edit = func(a *assignment.Assignment) { a.SecurityVersion = sv }
		k, _ := keywrap.GenerateKey(keywrap.X25519)
		srv.pub = k.PublicKey().Bytes()
		nonce := strings.Repeat("ab", 16)
		e.Nonce = nonce
		v, _ := a.trust.Verifier(w.serverKeyID)
		_, err := VerifyAssignment(v, srv.answer(nonce), e)
		if (err == nil) != ok {
			t.Fatalf("securityVersion %d with floor 9: err %v", sv, err)
		}
		if !ok {
			if r, _ := AsRefusal(err); r.Code != RefuseBelowFloor {
				t.Fatalf("code %s", r.Code)
			}
		}
	}
}

// TestTruncatedTransferNeverInstalls: a server that keeps cutting the blob
// short (without re-signing anything) only delays the update: the agent
// keeps its verified progress, reports no refusal (it cannot tell this
// from a dropped connection), and installs nothing.
func TestTruncatedTransferNeverInstalls(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(9, 9))
	w := newTamperWorld(t, rng)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	o := w.legit()
	srv := &tamperServer{t: t, w: w, o: o, now: now}
	inst := &countingInstaller{}
	a, err := New(Config{
		ServerURL: tmBase, DeviceID: tmDevice, DeviceType: "sensor-v1", BootstrapToken: "boot",
		AssignmentKeyPEM: w.serverPEM, VendorKeysPEM: [][]byte{w.vendorPEM},
		HTTPClient: contractClient(t, srv), Store: NewMemStore(), Installer: inst,
		Version: "1.0.0", SecurityFloor: tmFloor, Clock: func() time.Time { return now },
	})
	mustT(t, err)
	full := w.blob
	for i := range 5 {
		// Serve the true signed digest and size, but cut the body.
		o.blob = full[:envelope.HeaderSize+100*(i+1)]
		o.edit = func(a *assignment.Assignment) {
			a.EncryptedSHA256, a.EncryptedSize = hexSum(full), int64(len(full))
			a.BlobURL = tmBase + "/v1/blobs/" + hexSum(full)
		}
		o.wrapBlob = full
		if _, err := a.Step(context.Background()); err == nil {
			t.Fatalf("step %d: no error for a short body", i)
		} else if _, ok := AsRefusal(err); ok {
			t.Fatalf("step %d: short body refused as tampering: %v", i, err)
		}
	}
	if len(inst.installs) != 0 {
		t.Fatal("installed a truncated image")
	}
	for _, r := range srv.reports {
		if r.State == protov1.StateFailed || r.State == protov1.StateInstalled {
			t.Fatalf("report %+v", r)
		}
	}
	// Once the whole blob is served, it installs.
	o.blob = full
	if _, err := a.Step(context.Background()); err != nil || len(inst.installs) != 1 {
		t.Fatalf("after the full blob: %v, %d installs", err, len(inst.installs))
	}
}
