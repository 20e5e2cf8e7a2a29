package assignment

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
)

func TestPEMRoundTrip(t *testing.T) {
	for name, key := range map[string]crypto.Signer{"ed25519": edKey(1), "ecdsa-p256": ecKey(t)} {
		t.Run(name, func(t *testing.T) {
			privPEM, err := MarshalPrivateKeyPEM(key)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := pem.Decode(privPEM); b == nil || b.Type != "PRIVATE KEY" {
				t.Fatalf("private key PEM = %s", privPEM)
			}
			back, err := ParsePrivateKeyPEM(privPEM)
			if err != nil {
				t.Fatal(err)
			}
			if !back.(interface{ Equal(crypto.PrivateKey) bool }).Equal(key) {
				t.Fatal("parsed private key differs")
			}
			pubPEM, err := MarshalPublicKeyPEM(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ParsePublicKeyPEM(pubPEM)
			if err != nil {
				t.Fatal(err)
			}
			// A key pair that went through PEM still signs and verifies.
			s := mustSign(t, mustSigner(t, back), validAssignment())
			v, err := NewVerifier(pub)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(s, "sensor-0042", t0, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseECPrivateKeyPEM(t *testing.T) {
	key := ecKey(t)
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(back) {
		t.Fatal("parsed EC private key differs")
	}
}

func TestPEMRefuses(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	pkix := func(k any) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	p384DER, err := x509.MarshalECPrivateKey(p384)
	if err != nil {
		t.Fatal(err)
	}
	edPub := edKey(1).Public().(ed25519.PublicKey)

	privTests := []struct {
		name string
		in   []byte
		want error
	}{
		{"not PEM", []byte("-----BEGIN NOTHING"), ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"RSA PKCS#8", pkcs8(rsaKey), ErrUnsupportedKey},
		{"P-384 PKCS#8", pkcs8(p384), ErrUnsupportedKey},
		{"P-384 SEC 1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: p384DER}), ErrUnsupportedKey},
		{"RSA PRIVATE KEY block", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), ErrUnsupportedKey},
		{"public key block", pkix(edPub), ErrUnsupportedKey},
		{"garbage PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), ErrMalformed},
	}
	for _, tt := range privTests {
		t.Run("private/"+tt.name, func(t *testing.T) {
			k, err := ParsePrivateKeyPEM(tt.in)
			if !errors.Is(err, tt.want) || k != nil {
				t.Fatalf("ParsePrivateKeyPEM = %v, %v; want %v", k, err, tt.want)
			}
		})
	}

	pubTests := []struct {
		name string
		in   []byte
		want error
	}{
		{"not PEM", []byte("ssh-ed25519 AAAA"), ErrMalformed},
		{"RSA", pkix(&rsaKey.PublicKey), ErrUnsupportedKey},
		{"P-384", pkix(&p384.PublicKey), ErrUnsupportedKey},
		{"private key block", pkcs8(edKey(1)), ErrUnsupportedKey},
		{"garbage", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), ErrMalformed},
	}
	for _, tt := range pubTests {
		t.Run("public/"+tt.name, func(t *testing.T) {
			k, err := ParsePublicKeyPEM(tt.in)
			if !errors.Is(err, tt.want) || k != nil {
				t.Fatalf("ParsePublicKeyPEM = %v, %v; want %v", k, err, tt.want)
			}
		})
	}
}
