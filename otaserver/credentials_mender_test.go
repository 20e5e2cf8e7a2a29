package otaserver_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/menderkey"
	"github.com/otaflow/otaflow/otaserver"
)

func menderPub(t *testing.T, pub any) (string, menderkey.Key) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	k, err := menderkey.Parse([]byte(p))
	if err != nil {
		t.Fatal(err)
	}
	return p, k
}

// TestMenderCredential: the tenant token finds its DeviceEnrollment; no
// token finds the one enrollment that preauthorizes the key, and none when
// two do (the tenant would be ambiguous) or none does; unusable keys are
// left out; the settings carry spec.mender.
func TestMenderCredential(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM, ecKey := menderPub(t, &ec.PublicKey)
	edPEM, edKey := menderPub(t, edPub)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, otherKey := menderPub(t, &other.PublicKey)

	exp := metav1.NewTime(time.Unix(2_000_000_000, 0))
	es := []otav1.DeviceEnrollment{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "open"}, Spec: otav1.DeviceEnrollmentSpec{
			ExpiresAt: &exp,
			Mender:    &otav1.MenderEnrollment{DeviceType: "sensor-v1", AutoAccept: true, Labels: map[string]string{"region": "eu"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "keys"}, Spec: otav1.DeviceEnrollmentSpec{
			Mender: &otav1.MenderEnrollment{DeviceType: "gw", PreauthorizedKeys: []string{ecPEM, edPEM, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "c", Name: "keys"}, Spec: otav1.DeviceEnrollmentSpec{
			Mender: &otav1.MenderEnrollment{DeviceType: "gw", PreauthorizedKeys: []string{edPEM}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "d", Name: "ddi-only"}, Spec: otav1.DeviceEnrollmentSpec{
			DDI: &otav1.DDIEnrollment{DeviceType: "x", GatewayToken: true}}},
	}
	toks := [][]byte{[]byte("tenant-a-0123456789abcdef0123456789"), []byte("tenant-b-0123456789abcdef0123456789"),
		[]byte("tenant-c-0123456789abcdef0123456789"), []byte("tenant-d-0123456789abcdef0123456789")}
	m, problems := otaserver.CompileCredentials(es, toks)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	cs := otaserver.NewCredentialSet()
	cs.Replace(m)

	cr, ok := cs.MenderCredential(string(toks[0]), otherKey.DER)
	if !ok || cr.Key() != "a/open" || cr.Mender == nil || !cr.Mender.AutoAccept || cr.Mender.DeviceType != "sensor-v1" || cr.Mender.Labels["region"] != "eu" {
		t.Fatalf("tenant a: %+v, %v", cr, ok)
	}
	if why := cr.Refuses(otherKey.DeviceID(), exp.Add(time.Second)); why == "" {
		t.Error("an expired enrollment admits a new device")
	}
	cr, ok = cs.MenderCredential(string(toks[1]), ecKey.DER)
	if !ok || cr.Key() != "b/keys" || cr.Mender.AutoAccept || !cr.Mender.Preauthorized(ecKey.DER) || cr.Mender.Preauthorized(otherKey.DER) {
		t.Fatalf("tenant b: %+v, %v", cr, ok)
	}
	if len(cr.Mender.Keys) != 2 {
		t.Errorf("b has %d usable keys, want 2 (the garbled one left out)", len(cr.Mender.Keys))
	}
	if cr, ok := cs.MenderCredential("", ecKey.DER); !ok || cr.Key() != "b/keys" {
		t.Errorf("no tenant token, key preauthorized by b only: %v, %v", cr, ok)
	}
	if cr, ok := cs.MenderCredential("", edKey.DER); ok {
		t.Errorf("no tenant token, key preauthorized by b and c: got %s, want none", cr.Key())
	}
	if _, ok := cs.MenderCredential("", otherKey.DER); ok {
		t.Error("no tenant token, key preauthorized nowhere: found a credential")
	}
	if _, ok := cs.MenderCredential("unknown-tenant-token-0123456789abcdef", otherKey.DER); ok {
		t.Error("an unknown tenant token found a credential")
	}
	if cr, ok := cs.MenderCredential(string(toks[3]), otherKey.DER); !ok || cr.Mender != nil {
		t.Errorf("an enrollment without spec.mender: %+v, %v (the front refuses it for having no Mender settings)", cr, ok)
	}
}
