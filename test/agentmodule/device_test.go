package device

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaflow/otaflow/agent"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/tokenseal"
)

// installer is a device's own Installer: it only knows what runs.
type installer struct{ running string }

func (i *installer) Running(context.Context) (string, error) { return i.running, nil }
func (i *installer) Install(context.Context, agent.Image) error {
	return nil
}
func (i *installer) Confirm(context.Context, string) error { return nil }

// server is a minimal protocol v1 server built from the public protocol
// packages: it enrolls the device and answers its check with a signed
// commit for the running version, which raises the device's floor.
type server struct {
	t      *testing.T
	signer *assignment.Signer
	mu     sync.Mutex
	token  string
	kem    keywrap.KEM
	pub    []byte
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	write := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.URL.Path {
	case protov1.PathInfo:
		write(200, protov1.Info{Protocol: protov1.Name, Revision: protov1.Revision,
			Features: []string{protov1.FeatureCommit, protov1.FeatureSealedToken}, AssignmentKeyIDs: []string{s.signer.KeyID()}})
	case protov1.PathEnroll:
		var req protov1.EnrollRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			write(400, protov1.Error{Code: protov1.CodeMalformedJSON, Message: err.Error()})
			return
		}
		pub, err := req.Validate()
		if err != nil {
			write(400, protov1.Error{Code: protov1.CodeBadRequest, Message: err.Error()})
			return
		}
		s.kem, s.pub, s.token = keywrap.KEM(req.KEM), pub, "device-token-"+req.DeviceID
		// The token sealed to the device's key: only the device reads it.
		sealed, err := tokenseal.Seal(s.kem, pub, s.token, s.signer.KeyID(), req.DeviceID)
		if err != nil {
			write(500, protov1.Error{Code: protov1.CodeInternal, Message: err.Error()})
			return
		}
		write(201, protov1.EnrollResponse{DeviceID: req.DeviceID, SealedToken: base64.StdEncoding.EncodeToString(sealed), AssignmentKeyID: s.signer.KeyID()})
	case protov1.PathUpdate:
		if r.Header.Get("Authorization") != "Bearer "+s.token {
			write(401, protov1.Error{Code: protov1.CodeUnauthenticated, Message: "no"})
			return
		}
		ci, err := protov1.ParseCheckIn(r.URL.Query())
		if err != nil {
			write(400, protov1.Error{Code: protov1.CodeBadRequest, Message: err.Error()})
			return
		}
		write(200, protov1.UpdateResponse{Action: protov1.ActionCommit, Rollout: "fleet/eu", Assignment: s.commit(ci)})
	default:
		write(404, protov1.Error{Code: protov1.CodeNotFound, Message: "no such endpoint"})
	}
}

// commit signs a commit for the running version at security version 7.
func (s *server) commit(ci protov1.CheckIn) *assignment.Signed {
	plain := sha256.Sum256([]byte("image " + ci.Version))
	blob := sha256.Sum256([]byte("encrypted image " + ci.Version))
	key := make([]byte, keywrap.ContentKeySize)
	_, _ = rand.Read(key)
	wrapped, err := keywrap.Wrap(s.kem, s.pub, key, blob, "dev-1")
	if err != nil {
		s.t.Fatal(err)
	}
	now := time.Now()
	signed, err := s.signer.Sign(assignment.Assignment{
		DeviceID: "dev-1", Rollout: "fleet/eu", Release: "fleet/fw-" + ci.Version, Version: ci.Version, SecurityVersion: 7,
		PlainSHA256: hex.EncodeToString(plain[:]), PlainSize: 1000,
		EncryptedSHA256: hex.EncodeToString(blob[:]), EncryptedSize: 2000,
		Suite: assignment.Suite, BlobURL: "https://ota.example.com" + protov1.PathBlobs + hex.EncodeToString(blob[:]),
		KEM: string(s.kem), WrappedKey: wrapped, Commit: true,
		VendorSignature: base64.StdEncoding.EncodeToString([]byte("unused for a commit")),
		Nonce:           ci.Nonce, IssuedAt: now, ExpiresAt: now.Add(time.Hour),
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return &signed
}

func TestDeviceOutsideTheModule(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := assignment.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(priv.Public())
	vendorPub, _, _ := ed25519.GenerateKey(rand.Reader)
	vendorDER, _ := x509.MarshalPKIXPublicKey(vendorPub)
	srv := httptest.NewServer(&server{t: t, signer: signer})
	defer srv.Close()

	a, err := agent.New(agent.Config{
		ServerURL: srv.URL, DeviceID: "dev-1", DeviceType: "sensor-v1", BootstrapToken: "factory-token",
		KEM:              keywrap.P256,
		AssignmentKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		VendorKeysPEM:    [][]byte{pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: vendorDER})},
		Store:            agent.NewMemStore(), Installer: &installer{running: "2.0.0"},
		Version: "2.0.0", SecurityFloor: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := a.ServerInfo(ctx)
	if err != nil || !strings.HasPrefix(info.Protocol, "otaflow/") {
		t.Fatalf("server info %+v: %v", info, err)
	}
	if _, err := a.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(); st.SecurityFloor != 7 || st.Version != "2.0.0" {
		t.Fatalf("after a signed commit: floor %d version %q, want 7 and 2.0.0", st.SecurityFloor, st.Version)
	}
}
