package vendorsig

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// maxValueSize bounds a base64 signature value; an RSA-16384 signature is
// under 3 KiB encoded.
const maxValueSize = 16 << 10

// ParseSignature decodes a standard base64 signature value, as printed by
// `cosign sign-blob --key` or `openssl base64`, into the signature bytes.
// Surrounding whitespace is trimmed; line breaks inside are ignored;
// padding may be omitted. Errors wrap ErrMalformedSignature.
func ParseSignature(b64 string) ([]byte, error) {
	s := strings.TrimSpace(b64)
	if s == "" {
		return nil, fmt.Errorf("%w: empty signature value", ErrMalformedSignature)
	}
	if len(s) > maxValueSize {
		return nil, fmt.Errorf("%w: signature value is %d bytes, at most %d expected", ErrMalformedSignature, len(s), maxValueSize)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		// Padding may be omitted; if that fails too, the padded decoder's
		// error is the one reported.
		if r, rawErr := base64.RawStdEncoding.Strict().DecodeString(s); rawErr == nil {
			raw, err = r, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: signature value is not standard base64: %w", ErrMalformedSignature, err)
	}
	return raw, nil
}
