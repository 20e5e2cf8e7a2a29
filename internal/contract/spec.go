// Package contract holds device protocol v1 to its contract,
// docs/openapi.yaml: a Checker validates HTTP requests and answers against
// the specification with kin-openapi (openapi3filter), as an
// http.RoundTripper around a client (Wrap) or as middleware around a
// server (Handler), collects what disagrees, and fails the test
// (Check, or the cleanup of For).
//
// Requests a test sends invalid on purpose (malformed bodies, wrong
// methods, hostile clients) are marked one by one (Exempt, or the
// ExemptHeader) and are then exempt from request validation, but only as
// long as the server refuses them with a 4xx: their answers are validated
// like any other. Answers a fake server sends off-contract on purpose
// (tampering tests of the device library) are marked the same way with
// ExemptResponse.
//
// ForSpec holds another API of the OTA server to its own specification the
// same way: the hawkBit DDI front, docs/ddi-openapi.yaml (otherspec.go).
package contract

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Spec is a loaded and validated OpenAPI document with its router.
type Spec struct {
	// Doc is the document as loaded.
	Doc    *openapi3.T
	Path   string
	router routers.Router
}

// SpecPath is docs/openapi.yaml of this repository, found from this
// file's location.
func SpecPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "docs", "openapi.yaml"))
}

// Load reads an OpenAPI document, validates it (openapi3's Validate, with
// examples) and builds its router.
func Load(path string) (*Spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("contract: load %s: %w", path, err)
	}
	return newSpec(doc, loader, path)
}

// LoadData is Load for a document in memory.
func LoadData(data []byte) (*Spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("contract: load: %w", err)
	}
	return newSpec(doc, loader, "")
}

func newSpec(doc *openapi3.T, loader *openapi3.Loader, path string) (*Spec, error) {
	if err := doc.Validate(loader.Context, openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("contract: %s is not a valid OpenAPI document: %w", name(path), err)
	}
	if doc.Paths == nil || doc.Paths.Len() == 0 {
		return nil, fmt.Errorf("contract: %s has no paths", name(path))
	}
	if err := checkKeywords(doc); err != nil {
		return nil, fmt.Errorf("contract: %s %w", name(path), err)
	}
	// Route on paths alone: tests talk to loopback servers and made-up
	// hosts, not to the servers the document names. Validate with
	// kin-openapi's own validator (keywords.go), which it uses for
	// OpenAPI 3.0.
	routed := *doc
	routed.Servers = nil
	routed.OpenAPI = "3.0.3"
	r, err := gorillamux.NewRouter(&routed)
	if err != nil {
		return nil, fmt.Errorf("contract: route %s: %w", name(path), err)
	}
	return &Spec{Doc: doc, Path: path, router: r}, nil
}

func name(path string) string {
	if path == "" {
		return "the document"
	}
	return path
}

var defaultSpec struct {
	once sync.Once
	spec *Spec
	err  error
}

// Default is docs/openapi.yaml, loaded once per process.
func Default() (*Spec, error) {
	defaultSpec.once.Do(func() {
		defaultSpec.spec, defaultSpec.err = Load(SpecPath())
	})
	if defaultSpec.spec == nil && defaultSpec.err == nil {
		return nil, errors.New("contract: no specification")
	}
	return defaultSpec.spec, defaultSpec.err
}
