package integration_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	protov1 "github.com/otaflow/otaflow/protocol/v1"

	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func isBlob(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v1/blobs/") }

// blobTap counts blob bytes, records Range headers, and can cut the first
// download after cutAfter bytes or flip the byte at offset flipAt.
type blobTap struct {
	mu       sync.Mutex
	ranges   []string
	bytes    int64
	cutAfter int64 // cut the first blob response after this many bytes
	flipAt   int64 // flip the byte at this blob offset (if > 0)
	requests int
}

var errReset = errors.New("connection reset by peer (test)")

func (b *blobTap) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err != nil || !isBlob(r) {
			return resp, err
		}
		b.mu.Lock()
		b.ranges = append(b.ranges, r.Header.Get("Range"))
		b.requests++
		first := b.requests == 1
		b.mu.Unlock()
		start := int64(0)
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			start, _ = parseStart(cr)
		}
		body := &tapBody{tap: b, rc: resp.Body, pos: start}
		if first && b.cutAfter > 0 {
			body.cut = b.cutAfter
		}
		resp.Body = body
		return resp, nil
	})
}

func parseStart(cr string) (int64, error) {
	var s, e, n int64
	_, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &s, &e, &n)
	return s, err
}

type tapBody struct {
	tap  *blobTap
	rc   io.ReadCloser
	pos  int64
	read int64
	cut  int64
}

func (t *tapBody) Read(p []byte) (int, error) {
	if t.cut > 0 {
		if t.read >= t.cut {
			return 0, errReset
		}
		if rem := t.cut - t.read; int64(len(p)) > rem {
			p = p[:rem]
		}
	}
	n, err := t.rc.Read(p)
	if f := t.tap.flipAt; f > 0 && f >= t.pos && f < t.pos+int64(n) {
		p[f-t.pos] ^= 0x01
	}
	t.pos += int64(n)
	t.read += int64(n)
	t.tap.mu.Lock()
	t.tap.bytes += int64(n)
	t.tap.mu.Unlock()
	return n, err
}

func (t *tapBody) Close() error { return t.rc.Close() }

// resign rewrites assignments in update answers, signed again with the
// server's key, as a compromised or buggy server could send them.
func resign(next http.RoundTripper, mutate func(*assignment.Assignment)) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err != nil || r.URL.Path != "/v1/update" || resp.StatusCode != http.StatusOK {
			return resp, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var u protov1.UpdateResponse
		if err := json.Unmarshal(body, &u); err != nil || u.Assignment == nil {
			return nil, errors.New("test: cannot rewrite update answer")
		}
		var a assignment.Assignment
		if err := json.Unmarshal(u.Assignment.Payload, &a); err != nil {
			return nil, err
		}
		mutate(&a)
		s, err := signer.Sign(a)
		if err != nil {
			return nil, err
		}
		u.Assignment = &s
		body, _ = json.Marshal(u)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Del("Content-Length")
		return resp, nil
	})
}
