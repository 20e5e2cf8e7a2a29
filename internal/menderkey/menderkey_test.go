package menderkey_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/otaflow/otaflow/internal/menderkey"
)

func pemOf(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func publicPEM(t *testing.T, pub crypto.PublicKey) ([]byte, []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PUBLIC KEY", der), der
}

// sign signs msg as mender-client does: RSA PKCS#1 v1.5 and ECDSA (ASN.1)
// over SHA-256, Ed25519 over msg itself.
func sign(t *testing.T, s crypto.Signer, msg []byte) []byte {
	t.Helper()
	d := sha256.Sum256(msg)
	var (
		sig []byte
		err error
	)
	switch k := s.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
	case *ecdsa.PrivateKey:
		sig, err = ecdsa.SignASN1(rand.Reader, k, d[:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, msg)
	default:
		t.Fatalf("key %T", s)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestParseAndVerify(t *testing.T) {
	type keyCase struct {
		name, kind string
		signer     crypto.Signer
	}
	var cases []keyCase
	for _, bits := range []int{2048, 3072, 4096} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, keyCase{"rsa-" + strconv.Itoa(bits), "rsa", k})
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, keyCase{"ecdsa-p256", "ecdsa-p256", ec}, keyCase{"ed25519", "ed25519", ed})
	msg := []byte(`{"id_data":"{\"mac\":\"02:00:00:00:00:01\"}","pubkey":"...","tenant_token":""}` + "\n")
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, der := publicPEM(t, c.signer.Public())
			k, err := menderkey.Parse(p)
			if err != nil {
				t.Fatal(err)
			}
			if k.Kind != c.kind || !bytes.Equal(k.DER, der) {
				t.Fatalf("kind %q, DER equal %v", k.Kind, bytes.Equal(k.DER, der))
			}
			// As mender-client sends it: with CRLF or trailing blanks.
			if _, err := menderkey.Parse(append(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n")), " \t\n"...)); err != nil {
				t.Fatalf("CRLF and trailing blanks: %v", err)
			}
			sum := sha256.Sum256(der)
			if id := k.DeviceID(); id != "mender-"+hex.EncodeToString(sum[:])[:40] || !strings.HasPrefix(id, menderkey.DeviceIDPrefix) {
				t.Fatalf("device ID %q", id)
			}
			sig := sign(t, c.signer, msg)
			if err := k.Verify(msg, sig); err != nil {
				t.Fatalf("good signature: %v", err)
			}
			bad := map[string][2][]byte{
				"other message":    {append(bytes.Clone(msg), ' '), sig},
				"flipped bit":      {msg, flip(sig)},
				"empty signature":  {msg, nil},
				"truncated":        {msg, sig[:len(sig)-1]},
				"another key's":    {msg, sign(t, cases[(i+1)%len(cases)].signer, msg)},
				"signed as digest": {msg, signDigestAsMessage(t, c.signer, msg)},
			}
			for name, b := range bad {
				if err := k.Verify(b[0], b[1]); !errors.Is(err, menderkey.ErrBadSignature) {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
	}
}

func flip(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)/2] ^= 0x10
	return c
}

// signDigestAsMessage signs the wrong thing: Ed25519 over the SHA-256 of
// msg, the others over msg unhashed (the SHA-256 of msg hashed again).
func signDigestAsMessage(t *testing.T, s crypto.Signer, msg []byte) []byte {
	t.Helper()
	d := sha256.Sum256(msg)
	if k, ok := s.(ed25519.PrivateKey); ok {
		return ed25519.Sign(k, d[:])
	}
	return sign(t, s, d[:])
}

func TestParseRefuses(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPEM, edDER := publicPEM(t, ed.Public())
	weakPEM, _ := publicPEM(t, weak.Public())
	p384PEM, _ := publicPEM(t, p384.Public())
	privDER, err := x509.MarshalPKCS8PrivateKey(ed)
	if err != nil {
		t.Fatal(err)
	}
	long := append(bytes.Clone(edPEM), bytes.Repeat([]byte(" "), menderkey.MaxPEMBytes)...)
	for name, in := range map[string][]byte{
		"RSA 1024":                          weakPEM,
		"P-384":                             p384PEM,
		"a PRIVATE KEY":                     pemOf(t, "PRIVATE KEY", privDER),
		"PKCS#1 RSA block":                  pemOf(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&weak.PublicKey)),
		"PUBLIC KEY of a private key's DER": pemOf(t, "PUBLIC KEY", privDER),
		"garbage":                           []byte("not a key"),
		"empty":                             nil,
		"DER without PEM":                   edDER,
		"bad base64":                        []byte("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n"),
		"truncated DER":                     pemOf(t, "PUBLIC KEY", edDER[:len(edDER)-1]),
		"trailing data":                     append(bytes.Clone(edPEM), "x"...),
		"a second block":                    append(bytes.Clone(edPEM), edPEM...),
		"over 4096 bytes":                   long,
	} {
		t.Run(name, func(t *testing.T) {
			if k, err := menderkey.Parse(in); !errors.Is(err, menderkey.ErrInvalidKey) {
				t.Fatalf("kind %q, error %v", k.Kind, err)
			}
		})
	}
	// Trailing blanks alone are fine, up to the length limit.
	if _, err := menderkey.Parse(long[:menderkey.MaxPEMBytes]); err != nil {
		t.Fatalf("%d bytes with trailing blanks: %v", menderkey.MaxPEMBytes, err)
	}
}

func TestVerifyWithoutKey(t *testing.T) {
	if err := (menderkey.Key{}).Verify([]byte("m"), []byte("s")); !errors.Is(err, menderkey.ErrBadSignature) {
		t.Fatalf("zero Key: %v", err)
	}
}
