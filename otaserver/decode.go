package otaserver

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
	"github.com/otaflow/otaflow/protocol/v1/strictjson"
)

// decodeJSON reads a JSON object strictly (no unknown fields, nothing after
// it) and writes the error response itself when it fails.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, protov1.CodeContentType, "Content-Type must be application/json")
		return false
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, protov1.CodeTooLarge, fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit))
			return false
		}
		writeError(w, http.StatusBadRequest, protov1.CodeBadRequest, "cannot read request body")
		return false
	}
	if err := unmarshalStrict(body, v); err != nil {
		writeError(w, http.StatusBadRequest, protov1.CodeMalformedJSON, err.Error())
		return false
	}
	return true
}

// unmarshalStrict decodes one JSON object exactly as the protocol spells
// it (protocol/v1/strictjson): exact field names, no duplicates, no nulls,
// nothing after it.
func unmarshalStrict(body []byte, v any) error {
	if err := strictjson.Unmarshal(body, v); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	return nil
}
