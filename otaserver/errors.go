package otaserver

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Error codes, stable across versions; devices may switch on them.
const (
	codeBadRequest      = "bad_request"
	codeMalformedJSON   = "malformed_json"
	codeUnauthenticated = "unauthenticated"
	codeBadBootstrap    = "bad_bootstrap_token"
	codeForbidden       = "forbidden"
	codeNotAssigned     = "not_assigned"
	codeNotFound        = "not_found"
	codeUnknownRollout  = "unknown_rollout"
	codeKeyMismatch     = "key_mismatch"
	codeInvalidState    = "invalid_transition"
	codeFinal           = "final"
	codeCanceled        = "canceled"
	codeTooLarge        = "too_large"
	codeContentType     = "unsupported_media_type"
	codeRateLimited     = "rate_limited"
	codeMethod          = "method_not_allowed"
	codeInternal        = "internal"
	codeUnavailable     = "unavailable"
)

// apiError is the body of every error response.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}

// retrySeconds formats a Retry-After value, rounded up, at least 1.
func retrySeconds(after time.Duration) string {
	return strconv.Itoa(max(1, int(after.Seconds()+0.999)))
}

func writeRetry(w http.ResponseWriter, after time.Duration, code, msg string) {
	w.Header().Set("Retry-After", retrySeconds(after))
	writeError(w, http.StatusTooManyRequests, code, msg)
}
