package signature

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseValue(t *testing.T) {
	raw := randomImage(t, 71)
	std := base64.StdEncoding.EncodeToString(raw)
	// openssl base64 wraps at 64 columns.
	wrapped := std[:64] + "\n" + std[64:] + "\n"
	tests := []struct {
		name    string
		in      string
		want    []byte
		wantErr string
	}{
		{name: "cosign output with newline", in: std + "\n", want: raw},
		{name: "padded", in: std, want: raw},
		{name: "unpadded", in: strings.TrimRight(std, "="), want: raw},
		{name: "surrounding whitespace", in: " \t\r\n" + std + " \r\n", want: raw},
		{name: "wrapped at 64 columns", in: wrapped, want: raw},
		{name: "CRLF wrapped", in: strings.ReplaceAll(wrapped, "\n", "\r\n"), want: raw},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "only whitespace", in: " \n\t", wantErr: "empty"},
		{name: "garbage", in: "not a signature!", wantErr: "not standard base64"},
		{name: "url alphabet", in: base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe}), wantErr: "not standard base64"},
		{name: "inner space", in: std[:10] + " " + std[10:], wantErr: "not standard base64"},
		{name: "truncated", in: std[:93], wantErr: "not standard base64"},
		{name: "non-zero padding bits", in: std[:len(std)-4] + "AAB=", wantErr: "not standard base64"},
		{name: "JSON bundle given as value", in: `{"mediaType":"x"}`, wantErr: "not standard base64"},
		{name: "too long", in: strings.Repeat("A", maxValueSize+4), wantErr: "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := ParseValue(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrMalformedSignature) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrMalformedSignature containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sig.Raw, tt.want) || sig.Digest != nil || sig.KeyHint != "" {
				t.Fatalf("got %+v", sig)
			}
		})
	}
}

func TestParseBundle(t *testing.T) {
	sig := randomImage(t, 64)
	digest := sha([]byte("image"))
	hint := cosignHint(t, p256A().Public())
	valid := cosignBundle(t, mediaTypeV03, sig, digest, hint)

	// edit returns the valid bundle with one change made to its JSON tree.
	edit := func(change func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(valid, &m); err != nil {
			t.Fatal(err)
		}
		change(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ms := func(m map[string]any) map[string]any { return m["messageSignature"].(map[string]any) }
	md := func(m map[string]any) map[string]any { return ms(m)["messageDigest"].(map[string]any) }

	tests := []struct {
		name     string
		in       []byte
		wantHint string
		wantErr  string
	}{
		{name: "v0.3", in: valid, wantHint: hint},
		{name: "v0.3 parameter form", in: edit(func(m map[string]any) { m["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.3" }), wantHint: hint},
		{name: "v0.3.1", in: edit(func(m map[string]any) { m["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.3.1+json" }), wantHint: hint},
		{name: "v0.2", in: edit(func(m map[string]any) { m["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2" }), wantHint: hint},
		{name: "v0.1", in: edit(func(m map[string]any) { m["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.1" }), wantHint: hint},
		{name: "no hint", in: edit(func(m map[string]any) { delete(m["verificationMaterial"].(map[string]any), "publicKey") })},
		{name: "no verification material", in: edit(func(m map[string]any) { delete(m, "verificationMaterial") })},
		{name: "certificate instead of key", in: edit(func(m map[string]any) {
			m["verificationMaterial"] = map[string]any{"certificate": map[string]any{"rawBytes": "MIIB"}}
		})},
		{name: "unpadded base64", in: edit(func(m map[string]any) {
			ms(m)["signature"] = base64.RawStdEncoding.EncodeToString(sig)
			md(m)["digest"] = base64.RawURLEncoding.EncodeToString(digest)
		}), wantHint: hint},

		{name: "empty", in: nil, wantErr: "cannot decode bundle JSON"},
		{name: "truncated JSON", in: valid[:len(valid)/2], wantErr: "cannot decode bundle JSON"},
		{name: "trailing data", in: append(append([]byte(nil), valid...), []byte(" {}")...), wantErr: "cannot decode bundle JSON"},
		{name: "JSON array", in: []byte(`[]`), wantErr: "cannot decode bundle JSON"},
		{name: "signature value instead of bundle", in: []byte(base64.StdEncoding.EncodeToString(sig)), wantErr: "cannot decode bundle JSON"},
		{name: "no mediaType", in: edit(func(m map[string]any) { delete(m, "mediaType") }), wantErr: "no mediaType"},
		{name: "unknown mediaType", in: edit(func(m map[string]any) { m["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.4+json" }), wantErr: "unsupported bundle mediaType"},
		{name: "legacy cosign bundle", in: []byte(`{"base64Signature":"MEUC","rekorBundle":{}}`), wantErr: "no mediaType"},
		{name: "DSSE envelope", in: edit(func(m map[string]any) {
			delete(m, "messageSignature")
			m["dsseEnvelope"] = map[string]any{"payload": "e30=", "payloadType": "application/vnd.in-toto+json"}
		}), wantErr: "DSSE"},
		{name: "no messageSignature", in: edit(func(m map[string]any) { delete(m, "messageSignature") }), wantErr: "no messageSignature"},
		{name: "null messageSignature", in: edit(func(m map[string]any) { m["messageSignature"] = nil }), wantErr: "no messageSignature"},
		{name: "no signature", in: edit(func(m map[string]any) { delete(ms(m), "signature") }), wantErr: "has no signature"},
		{name: "signature not base64", in: edit(func(m map[string]any) { ms(m)["signature"] = "not base64!" }), wantErr: "signature is not base64"},
		{name: "signature wrong type", in: edit(func(m map[string]any) { ms(m)["signature"] = 42 }), wantErr: "cannot decode bundle JSON"},
		{name: "no messageDigest", in: edit(func(m map[string]any) { delete(ms(m), "messageDigest") }), wantErr: "no messageDigest"},
		{name: "SHA2_384", in: edit(func(m map[string]any) { md(m)["algorithm"] = "SHA2_384" }), wantErr: `algorithm is "SHA2_384"`},
		{name: "numeric algorithm", in: edit(func(m map[string]any) { md(m)["algorithm"] = 1 }), wantErr: "cannot decode bundle JSON"},
		{name: "no algorithm", in: edit(func(m map[string]any) { delete(md(m), "algorithm") }), wantErr: `algorithm is ""`},
		{name: "digest not base64", in: edit(func(m map[string]any) { md(m)["digest"] = "%%%" }), wantErr: "messageDigest is not base64"},
		{name: "digest too short", in: edit(func(m map[string]any) { md(m)["digest"] = base64.StdEncoding.EncodeToString(digest[:31]) }), wantErr: "31 bytes"},
		{name: "no digest", in: edit(func(m map[string]any) { delete(md(m), "digest") }), wantErr: "0 bytes"},
		{name: "hint too long", in: edit(func(m map[string]any) {
			m["verificationMaterial"].(map[string]any)["publicKey"] = map[string]any{"hint": strings.Repeat("h", maxHintSize+1)}
		}), wantErr: "hint"},
		{name: "too large", in: append(append([]byte(nil), valid[:len(valid)-1]...), append(bytes.Repeat([]byte(" "), maxBundleSize), '}')...), wantErr: "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBundle(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrMalformedSignature) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrMalformedSignature containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Raw, sig) || !bytes.Equal(got.Digest, digest) || got.KeyHint != tt.wantHint {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

// A bundle just under the limit is read; the limit is about size, not shape.
func TestParseBundleSizeLimit(t *testing.T) {
	valid := cosignBundle(t, mediaTypeV03, randomImage(t, 64), sha(nil), "")
	padded := append(bytes.Repeat([]byte(" "), maxBundleSize-len(valid)), valid...)
	if _, err := ParseBundle(padded); err != nil {
		t.Fatalf("bundle of exactly %d bytes: %v", len(padded), err)
	}
	if _, err := ParseBundle(append(padded, ' ')); !errors.Is(err, ErrMalformedSignature) {
		t.Fatalf("bundle of %d bytes: err = %v", len(padded)+1, err)
	}
}
