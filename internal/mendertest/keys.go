package mendertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"testing"
)

// KeyType is a kind of device or artifact-signing key.
type KeyType string

const (
	// KeyRSA is RSA 3072, the kind the client generates itself.
	KeyRSA KeyType = "rsa3072"
	// KeyECDSA is ECDSA on P-256.
	KeyECDSA KeyType = "ecdsa-p256"
	// KeyEd25519 is Ed25519 (device keys only: mender-artifact 3.9 cannot
	// sign with it).
	KeyEd25519 KeyType = "ed25519"
)

// Key is a private key in the PEM forms the Mender tools read.
type Key struct {
	Type   KeyType
	Signer crypto.Signer
	// PEM is PKCS#8 ("PRIVATE KEY"): the client (OpenSSL's
	// PEM_read_bio_PrivateKey) reads it for every type.
	PEM []byte
	// PublicPEM is PKIX ("PUBLIC KEY"), as the client sends it in
	// auth requests and as mender-artifact and ArtifactVerifyKey take it.
	PublicPEM []byte
}

// GenerateKey makes a fresh key of type typ.
func GenerateKey(t testing.TB, typ KeyType) *Key {
	t.Helper()
	k, err := generateKey(typ)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func generateKey(typ KeyType) (*Key, error) {
	var signer crypto.Signer
	var err error
	switch typ {
	case KeyRSA:
		signer, err = rsa.GenerateKey(rand.Reader, 3072)
	case KeyECDSA:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyEd25519:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("mendertest: unknown key type %q", typ)
	}
	if err != nil {
		return nil, fmt.Errorf("mendertest: generate %s key: %w", typ, err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, fmt.Errorf("mendertest: marshal %s key: %w", typ, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("mendertest: marshal %s public key: %w", typ, err)
	}
	return &Key{
		Type:      typ,
		Signer:    signer,
		PEM:       pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}),
		PublicPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
	}, nil
}

// TraditionalPEM is the key as PKCS#1 ("RSA PRIVATE KEY") or SEC 1 ("EC
// PRIVATE KEY"), the only forms mender-artifact 3.9 signs with.
func (k *Key) TraditionalPEM() ([]byte, error) {
	switch s := k.Signer.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(s)}), nil
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(s)
		if err != nil {
			return nil, fmt.Errorf("mendertest: marshal EC key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	default:
		return nil, fmt.Errorf("mendertest: mender-artifact 3.9 cannot sign with a %s key", k.Type)
	}
}
