package otaserver_test

import (
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/agent"
	"github.com/otaflow/otaflow/internal/contract"
	"github.com/otaflow/otaflow/otaserver/devicetest"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/tokenseal"
)

// Proof of key possession at enrollment, against the real OTA server over
// HTTP: public keys are not secret, so an attacker holding a device's
// public key and a valid bootstrap token can ask to enroll that device ID
// with that key. The server rotates the token (the real device must
// always be able to recover by enrolling again) but seals the new one to
// the enrolled key: the attacker gets nothing it can use, the victim's
// previous token stops working (the residual denial of service,
// docs/security.md), and the real agent recovers on its next request by
// enrolling again.

// stringsOf returns every JSON string in an answer, keys and values.
func stringsOf(t *testing.T, body []byte) []string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for k, v := range m {
		out = append(out, k)
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func TestSealedTokenTakeover(t *testing.T) {
	for _, kem := range []keywrap.KEM{keywrap.X25519, keywrap.P256} {
		t.Run(string(kem), func(t *testing.T) {
			h := newHarness(t, 1000)
			assignPEM, err := assignment.MarshalPublicKeyPEM(h.verifierKey())
			if err != nil {
				t.Fatal(err)
			}
			id := h.idIn("victim-"+string(kem), true)
			labels := map[string]string{"region": "eu"}
			store := agent.NewMemStore()
			a, err := agent.New(agent.Config{
				ServerURL: h.srv.URL, DeviceID: id, DeviceType: "sensor-v1", Labels: labels, KEM: kem,
				BootstrapToken: bootstrap, AssignmentKeyPEM: assignPEM, AllowUnsigned: true,
				Store: store, Installer: &nopInstaller{}, Version: "2.0.0", SecurityFloor: 2,
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.Step(ctx); err != nil {
				t.Fatalf("victim's first step: %v", err)
			}
			victimToken := a.State().Token
			if victimToken == "" {
				t.Fatal("victim not enrolled")
			}
			victimKey := devicePrivateKey(t, a.State())

			// The attacker knows the victim's ID and public key and holds a
			// valid bootstrap token; it enrolls with a key pair of its own
			// kind, presenting the victim's public key.
			thief, _ := devicetest.New(h.srv.URL, id, "gateway-v9", "0.0.1", map[string]string{"region": "us"})
			thief.KEM = kem
			if thief.Key, err = keywrap.GenerateKey(kem); err != nil {
				t.Fatal(err)
			}
			body := thief.EnrollRequest(bootstrap)
			body.PublicKey = base64.StdEncoding.EncodeToString(a.PublicKey())
			raw, _ := json.Marshal(body)
			rr := h.rawEnroll(t, raw)
			if rr.Status != http.StatusOK {
				t.Fatalf("replayed-key enrollment: %d %s", rr.Status, rr.Body)
			}

			// The answer is useless to the attacker: no clear token, nothing
			// its key opens, and no string in it is a bearer token.
			var er protov1.EnrollResponse
			if err := json.Unmarshal(rr.Body, &er); err != nil {
				t.Fatal(err)
			}
			if er.LegacyToken != "" || er.SealedToken == "" {
				t.Fatalf("answer %s", rr.Body)
			}
			if tok, err := tokenseal.OpenResponse(kem, thief.Key, id, er); !errors.Is(err, tokenseal.ErrOpen) {
				t.Fatalf("the attacker's key opened the answer: %q, %v", tok, err)
			}
			tryAll := contract.Exempt(ctx, "the attacker tries every string of the answer as a bearer token")
			for _, s := range stringsOf(t, rr.Body) {
				thief.Token = s
				if r, _, _ := thief.Check(tryAll, ""); r.Status != http.StatusUnauthorized {
					t.Fatalf("answer string %q works as a bearer token: %d", s, r.Status)
				}
			}

			// Yet the answer does carry the device's new, working token:
			// the victim's key opens it. Sealing, not a refusal, is what
			// keeps the attacker out.
			issued, err := tokenseal.OpenResponse(kem, victimKey, id, er)
			if err != nil {
				t.Fatalf("the victim's key does not open the answer: %v", err)
			}
			if issued == victimToken {
				t.Fatal("the enrollment did not rotate the token")
			}
			holder, _ := devicetest.New(h.srv.URL, id, "sensor-v1", "2.0.0", labels)
			holder.Token = issued
			if r, _, _ := holder.Check(ctx, ""); r.Status != http.StatusOK && r.Status != http.StatusNoContent {
				t.Fatalf("the sealed token does not work for its holder: %d %s", r.Status, r.Body)
			}

			// The residual denial of service: the rotation revoked the
			// victim's token ...
			holder.Token = victimToken
			r, _, _ := holder.Check(ctx, "")
			wantErr(t, r, http.StatusUnauthorized, "unauthenticated")
			// ... and the attacker's type and labels replaced the victim's
			// until it enrolls again.
			if d, err := h.store.Device(ctx, id); err != nil || d.Type != "gateway-v9" {
				t.Fatalf("device after the attack: %+v, %v", d, err)
			}

			// The real agent recovers on its next step: 401, enroll again
			// (its own answer opens), and its check goes through.
			if _, err := a.Step(ctx); err != nil {
				t.Fatalf("victim's step after the attack: %v", err)
			}
			recovered := a.State().Token
			if recovered == "" || recovered == victimToken || recovered == issued {
				t.Fatalf("the agent did not enroll again (token %q)", recovered)
			}
			holder.Token = recovered
			if r, _, _ := holder.Check(ctx, ""); r.Status != http.StatusOK && r.Status != http.StatusNoContent {
				t.Fatalf("recovered token: %d %s", r.Status, r.Body)
			}
			d, err := h.store.Device(ctx, id)
			if err != nil || d.Type != "sensor-v1" || d.Labels["region"] != "eu" || d.Version != "2.0.0" {
				t.Fatalf("device after recovery: %+v, %v", d, err)
			}
			// The token the attacker's enrollment produced is dead too.
			holder.Token = issued
			r, _, _ = holder.Check(ctx, "")
			wantErr(t, r, http.StatusUnauthorized, "unauthenticated")
		})
	}
}

// devicePrivateKey rebuilds an agent's device key from its state.
func devicePrivateKey(t *testing.T, st agent.State) *ecdh.PrivateKey {
	t.Helper()
	curve := ecdh.X25519()
	if st.KEM == string(keywrap.P256) {
		curve = ecdh.P256()
	}
	k, err := curve.NewPrivateKey(st.DeviceKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rawEnroll posts an enrollment body as is.
func (h *harness) rawEnroll(t *testing.T, body []byte) devicetest.Response {
	t.Helper()
	return raw(t, http.MethodPost, h.srv.URL+protov1.PathEnroll, "application/json", "", body)
}
