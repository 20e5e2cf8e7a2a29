package otaserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
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

// unmarshalStrict decodes one JSON object, refusing unknown fields and
// trailing data.
func unmarshalStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("malformed JSON: data after the object")
	}
	return nil
}
