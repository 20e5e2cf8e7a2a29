package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// maxAPIBody bounds API answers read into memory (assignments are at most
// 64 KiB of payload, base64-encoded).
const maxAPIBody = 128 << 10

// APIError is an HTTP error answer of the server.
type APIError struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is the server's Retry-After, 0 when absent.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// retryable reports whether err is worth retrying unchanged: 429, 5xx and
// network errors. Context cancellation and unusable enrollment answers are
// not.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, errCanceled) || errors.Is(err, ErrEnrollAnswer) {
		return false
	}
	if _, ok := AsRefusal(err); ok {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusTooManyRequests || ae.Status >= 500
	}
	return true
}

func retryAfterOf(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

func isCode(err error, status int, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status && (code == "" || ae.Code == code)
}

// response is a successful API answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// call sends one API request (no retries). Non-2xx answers are *APIError.
func (a *Agent) call(ctx context.Context, method, path string, body any, auth bool) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if auth {
		req.Header.Set("Authorization", "Bearer "+a.state.Token)
	}
	resp, err := a.cfg.HTTPClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody+1))
	if err != nil {
		return response{}, fmt.Errorf("read %s %s: %w", method, path, err)
	}
	if len(b) > maxAPIBody {
		return response{}, fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxAPIBody)
	}
	if resp.StatusCode >= 300 {
		return response{}, apiErrorOf(resp, b)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

func apiErrorOf(resp *http.Response, body []byte) *APIError {
	e := &APIError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	var ae protov1.Error
	if json.Unmarshal(body, &ae) == nil {
		e.Code, e.Message = ae.Code, ae.Message
	}
	return e
}

// parseRetryAfter reads delay-seconds (the server's form) or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return min(time.Duration(n)*time.Second, time.Hour)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), time.Hour)
	}
	return 0
}
