// Package devicetest is a minimal device client of protocol v1, used by
// the OTA server's tests and as a reference for device implementers.
//
// Its requests are held to docs/openapi.yaml by the server's tests, which
// serve the OTA server behind a contract checker (internal/contract). A
// test that sends an invalid request on purpose marks it by the context
// it passes: contract.Exempt(ctx, why); the device's transport carries
// the mark to the checker (and no further). To validate on the client
// side instead, against a server that is not checked, wrap d.HTTP with
// (*contract.Checker).Client.
package devicetest

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/internal/contract"
	"github.com/otaflow/otaflow/internal/envelope"
	"github.com/otaflow/otaflow/protocol/v1/assignment"
	"github.com/otaflow/otaflow/protocol/v1/keywrap"
	"github.com/otaflow/otaflow/protocol/v1/tokenseal"
)

// Device is a simulated device.
type Device struct {
	ID, Type      string
	Labels        map[string]string
	KEM           keywrap.KEM
	Key           *ecdh.PrivateKey
	Token         string
	Version       string
	SecurityFloor int64
	Boot          string // sent as the check-in's boot when set
	Base          string // server base URL
	HTTP          *http.Client
}

// New generates a device with a fresh X25519 key.
func New(base, id, typ, version string, labels map[string]string) (*Device, error) {
	k, err := keywrap.GenerateKey(keywrap.X25519)
	if err != nil {
		return nil, err
	}
	return &Device{ID: id, Type: typ, Labels: labels, KEM: keywrap.X25519, Key: k, Version: version, Base: base, HTTP: &http.Client{
		Timeout: 30 * time.Second,
		// The default transport, carrying the marks of contract.Exempt.
		Transport: contract.Forward(http.DefaultTransport),
		// A redirect to a presigned blob URL must not carry the token.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			req.Header.Del("Authorization")
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}}, nil
}

// Response is a raw answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Error decodes a JSON error body.
func (r Response) Error() (code, msg string) {
	var e struct{ Code, Message string }
	_ = json.Unmarshal(r.Body, &e)
	return e.Code, e.Message
}

func (d *Device) do(ctx context.Context, method, path string, body any, hdr map[string]string) (Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Response{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.Base+path, rd)
	if err != nil {
		return Response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if d.Token != "" {
		req.Header.Set("Authorization", "Bearer "+d.Token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

// EnrollRequest builds the device's enrollment body.
func (d *Device) EnrollRequest(bootstrap string) protov1.EnrollRequest {
	return protov1.EnrollRequest{
		DeviceID: d.ID, BootstrapToken: bootstrap, KEM: string(d.KEM),
		PublicKey:  base64.StdEncoding.EncodeToString(d.Key.PublicKey().Bytes()),
		DeviceType: d.Type, Labels: d.Labels, Version: d.Version, SecurityFloor: d.SecurityFloor,
	}
}

// Enroll enrolls and, on success, opens the sealed token with the device
// key and keeps it. An accepted answer whose token does not open is an
// error (and the device keeps its previous token).
func (d *Device) Enroll(ctx context.Context, bootstrap string) (Response, error) {
	r, err := d.do(ctx, http.MethodPost, "/v1/enroll", d.EnrollRequest(bootstrap), nil)
	if err == nil && (r.Status == http.StatusOK || r.Status == http.StatusCreated) {
		var er protov1.EnrollResponse
		if err := json.Unmarshal(r.Body, &er); err != nil {
			return r, err
		}
		tok, err := tokenseal.OpenResponse(d.KEM, d.Key, d.ID, er)
		if err != nil {
			return r, err
		}
		d.Token = tok
	}
	return r, err
}

// Check polls GET /v1/update with the device's version and floor.
func (d *Device) Check(ctx context.Context, nonce string) (Response, *protov1.UpdateResponse, error) {
	q := url.Values{"version": {d.Version}, "securityFloor": {strconv.FormatInt(d.SecurityFloor, 10)}}
	if nonce != "" {
		q.Set("nonce", nonce)
	}
	if d.Boot != "" {
		q.Set("boot", d.Boot)
	}
	r, err := d.do(ctx, http.MethodGet, "/v1/update?"+q.Encode(), nil, nil)
	if err != nil || r.Status != http.StatusOK {
		return r, nil, err
	}
	var u protov1.UpdateResponse
	if err := json.Unmarshal(r.Body, &u); err != nil {
		return r, nil, err
	}
	return r, &u, nil
}

// Verify checks a signed assignment as a device does.
func (d *Device) Verify(v *assignment.Verifier, s *assignment.Signed) (assignment.Assignment, error) {
	if s == nil {
		return assignment.Assignment{}, fmt.Errorf("no assignment")
	}
	return v.Verify(*s, d.ID, time.Now(), time.Minute)
}

// Head sends an authenticated HEAD.
func (d *Device) Head(ctx context.Context, path string, hdr map[string]string) (Response, error) {
	return d.do(ctx, http.MethodHead, path, nil, hdr)
}

// Get fetches a path (such as a blob) with extra headers.
func (d *Device) Get(ctx context.Context, path string, hdr map[string]string) (Response, error) {
	return d.do(ctx, http.MethodGet, path, nil, hdr)
}

// Download fetches the blob of a, resuming with a Range request after the
// first cut bytes, as a device does after a dropped connection.
func (d *Device) Download(ctx context.Context, a assignment.Assignment, cut int64) ([]byte, error) {
	u, err := url.Parse(a.BlobURL)
	if err != nil {
		return nil, err
	}
	first, err := d.Get(ctx, u.Path, map[string]string{"Range": fmt.Sprintf("bytes=0-%d", cut-1)})
	if err != nil {
		return nil, err
	}
	if first.Status != http.StatusPartialContent || int64(len(first.Body)) != cut {
		return nil, fmt.Errorf("first part: status %d, %d bytes", first.Status, len(first.Body))
	}
	etag := first.Header.Get("ETag")
	rest, err := d.Get(ctx, u.Path, map[string]string{"Range": fmt.Sprintf("bytes=%d-", cut), "If-Range": etag})
	if err != nil {
		return nil, err
	}
	if rest.Status != http.StatusPartialContent {
		return nil, fmt.Errorf("resume: status %d", rest.Status)
	}
	return append(first.Body, rest.Body...), nil
}

// Decrypt unwraps the content key with the device key and decrypts blob.
func (d *Device) Decrypt(a assignment.Assignment, blob []byte) ([]byte, error) {
	digest, err := hex.DecodeString(a.EncryptedSHA256)
	if err != nil || len(digest) != 32 {
		return nil, fmt.Errorf("bad digest")
	}
	key, err := keywrap.Unwrap(keywrap.KEM(a.KEM), d.Key, a.WrappedKey, [32]byte(digest), d.ID)
	if err != nil {
		return nil, err
	}
	r, err := envelope.NewDecryptor(bytes.NewReader(blob), key)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// Report posts a status report.
func (d *Device) Report(ctx context.Context, rep protov1.StatusReport) (Response, error) {
	return d.do(ctx, http.MethodPost, "/v1/status", rep, nil)
}
