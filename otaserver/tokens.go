package otaserver

import (
	"crypto/sha256"
	"sync/atomic"

	"github.com/otaflow/otaflow/internal/enrolltoken"
)

// TokenSet holds the valid bootstrap (enrollment) tokens: every data value
// of the enrollment Secret is one token. Only SHA-256 hashes are kept, so
// the comparison never depends on how much of a token matched.
type TokenSet struct {
	hashes atomic.Pointer[map[[32]byte]struct{}]
}

// NewTokenSet returns an empty set: nothing can enroll until Replace.
func NewTokenSet() *TokenSet {
	t := &TokenSet{}
	t.Replace(nil)
	return t
}

// Replace sets the valid tokens to the values of data; values that break
// the DeviceEnrollment token rules (enrolltoken.Check: too short or too
// long) are ignored. Removing a value revokes it at once. It returns the
// number of valid tokens.
func (t *TokenSet) Replace(data map[string][]byte) int {
	m := make(map[[32]byte]struct{}, len(data))
	for _, v := range data {
		if _, err := enrolltoken.Check(v); err == nil {
			m[sha256.Sum256(v)] = struct{}{}
		}
	}
	t.hashes.Store(&m)
	return len(m)
}

// Valid reports whether tok is a current bootstrap token.
func (t *TokenSet) Valid(tok string) bool {
	_, ok := (*t.hashes.Load())[sha256.Sum256([]byte(tok))]
	return ok && tok != ""
}
