package harness

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
)

// DeviceCAName is the common name of the CA that issues the device API's
// serving certificate (StackOptions.DeviceTLS).
const DeviceCAName = "otaflow-device-ca"

// DeviceTLSHost is the name the device API's serving certificate holds
// (DNS only: mbedTLS checks the server name against DNS names, never IP
// addresses); with StackOptions.DeviceTLS the device API's URLs name it.
const DeviceTLSHost = "localhost"

// writeDeviceTLS makes a CA and, from it, a serving certificate for
// DeviceTLSHost (server authentication) under Dir/device-tls.
func (s *Stack) writeDeviceTLS() error {
	dir := filepath.Join(s.Opts.Dir, "device-tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	s.DeviceCAFile = filepath.Join(dir, "ca.crt")
	ca, err := writeCA(s.DeviceCAFile, DeviceCAName)
	if err != nil {
		return err
	}
	s.DeviceCAPEM = ca.CertPEM
	p, err := ca.issue(dir, "serving", DeviceTLSHost, []string{DeviceTLSHost}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	s.DeviceCertFile, s.DeviceKeyFile = p.Cert, p.Key
	return nil
}

// deviceTLSArgs are the OTA server's flags for serving the device API:
// the serving certificate with StackOptions.DeviceTLS, else plain HTTP.
func (s *Stack) deviceTLSArgs() []string {
	if !s.Opts.DeviceTLS {
		return []string{"--insecure-http"} // loopback only
	}
	return []string{"--tls-cert-file=" + s.DeviceCertFile, "--tls-key-file=" + s.DeviceKeyFile}
}

// deviceURL is the device API's base URL on port.
func (s *Stack) deviceURL(port int) string {
	if !s.Opts.DeviceTLS {
		return fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	return fmt.Sprintf("https://%s:%d", DeviceTLSHost, port)
}

// DeviceServerTLSConfig serves with the device API's certificate (a
// certificate of the stack's device CA for DeviceTLSHost), for a test's
// proxy that stands in for the OTA server. It needs StackOptions.DeviceTLS.
func (s *Stack) DeviceServerTLSConfig() (*tls.Config, error) {
	if !s.Opts.DeviceTLS {
		return nil, fmt.Errorf("DeviceServerTLSConfig: the device API serves plain HTTP (StackOptions.DeviceTLS is off)")
	}
	cert, err := tls.LoadX509KeyPair(s.DeviceCertFile, s.DeviceKeyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// DeviceTransport is an HTTP transport for the device API: with
// StackOptions.DeviceTLS it trusts the stack's device CA (and no other),
// else it is a clone of http.DefaultTransport.
func (s *Stack) DeviceTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if s.Opts.DeviceTLS {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(s.DeviceCAPEM)
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	return t
}
