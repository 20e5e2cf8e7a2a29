package harness

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	devicesv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
)

// FrontProxyClientName is the common name of the client certificate
// kube-apiserver's aggregator proxies with (--requestheader-allowed-names).
const FrontProxyClientName = "front-proxy-client"

// DeviceAPIService is the Service (in the operator namespace) the device
// API's APIService names, as config/ deploys it.
const DeviceAPIService = "otaflow-device-api"

// tlsPair is a PEM certificate and key on disk.
type tlsPair struct{ Cert, Key string }

// certAuthority signs the test certificates.
type certAuthority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	CertPEM []byte
}

func newCA(name string) (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &certAuthority{cert: cert, key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// WriteCA writes the certificate (PEM) of a fresh self-signed CA named
// commonName to path: a CA to trust, or, with the name of one of the
// stack's, an impostor of it whose certificates a client must refuse.
func WriteCA(path, commonName string) error {
	_, err := writeCA(path, commonName)
	return err
}

// writeCA is newCA, its certificate written to path.
func writeCA(path, name string) (*certAuthority, error) {
	ca, err := newCA(name)
	if err != nil {
		return nil, err
	}
	return ca, os.WriteFile(path, ca.CertPEM, 0o644)
}

// issue writes a certificate for cn (a client certificate, or with
// dnsNames a server one) and its key under dir.
func (ca *certAuthority) issue(dir, file, cn string, dnsNames []string, usage x509.ExtKeyUsage) (tlsPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tlsPair{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tlsPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: dnsNames,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if len(dnsNames) > 0 {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tlsPair{}, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tlsPair{}, err
	}
	p := tlsPair{Cert: filepath.Join(dir, file+".crt"), Key: filepath.Join(dir, file+".key")}
	if err := os.WriteFile(p.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tlsPair{}, err
	}
	return p, os.WriteFile(p.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

// aggregationFlags configures kube-apiserver's aggregation layer as
// kubeadm does: a front-proxy CA that aggregated servers trust for the
// X-Remote-User/Group headers, and the client certificate the aggregator
// proxies with. The files are written under dir.
func aggregationFlags(dir string) (map[string]string, error) {
	dir = filepath.Join(dir, "front-proxy")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, err := newCA("front-proxy-ca")
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	client, err := ca.issue(dir, "front-proxy-client", FrontProxyClientName, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	return map[string]string{
		"requestheader-client-ca-file":       caFile,
		"requestheader-allowed-names":        FrontProxyClientName,
		"requestheader-username-headers":     "X-Remote-User",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"proxy-client-cert-file":             client.Cert,
		"proxy-client-key-file":              client.Key,
	}, nil
}

// deviceAPIServing makes the serving certificate of the OTA server's
// device API for the name the aggregator checks (service.namespace.svc)
// and returns it with the CA for the APIService's caBundle.
func deviceAPIServing(dir, namespace string) (tlsPair, []byte, error) {
	dir = filepath.Join(dir, "device-api")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tlsPair{}, nil, err
	}
	ca, err := newCA("otaflow-device-api-ca")
	if err != nil {
		return tlsPair{}, nil, err
	}
	svc := DeviceAPIService + "." + namespace + ".svc"
	p, err := ca.issue(dir, "serving", svc, []string{svc, "localhost"}, x509.ExtKeyUsageServerAuth)
	return p, ca.CertPEM, err
}

// registerDeviceAPI routes devices.ota.otaflow.io to the OTA server on
// 127.0.0.1:port: an ExternalName Service (the aggregator proxies to
// https://localhost:port, there being no cluster network here) and the
// APIService with the serving CA; then waits until the aggregator reports
// it Available.
func (s *Stack) registerDeviceAPI(ctx context.Context, port int, caBundle []byte) error {
	c := s.CP.Client
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: DeviceAPIService, Namespace: s.Opts.Namespace},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost"},
	}
	if err := c.Create(ctx, svc); err != nil {
		return fmt.Errorf("device API Service: %w", err)
	}
	as := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": devicesv1.SchemeGroupVersion.Version + "." + devicesv1.GroupName},
		"spec": map[string]any{
			"group": devicesv1.GroupName, "version": devicesv1.SchemeGroupVersion.Version,
			"groupPriorityMinimum": int64(1000), "versionPriority": int64(15),
			"service":  map[string]any{"name": DeviceAPIService, "namespace": s.Opts.Namespace, "port": int64(port)},
			"caBundle": base64.StdEncoding.EncodeToString(caBundle),
		},
	}}
	if err := c.Create(ctx, as); err != nil {
		return fmt.Errorf("device APIService: %w", err)
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(as), as); err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(as.Object, "status", "conditions")
		for _, x := range conds {
			m, _ := x.(map[string]any)
			if m["type"] == "Available" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}
