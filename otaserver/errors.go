package otaserver

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, protov1.Error{Code: code, Message: msg})
}

// retrySeconds formats a Retry-After value, rounded up, at least 1.
func retrySeconds(after time.Duration) string {
	return strconv.Itoa(max(1, int(after.Seconds()+0.999)))
}

func writeRetry(w http.ResponseWriter, after time.Duration, code, msg string) {
	w.Header().Set("Retry-After", retrySeconds(after))
	writeError(w, http.StatusTooManyRequests, code, msg)
}
