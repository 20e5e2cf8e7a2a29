package mender

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The token key Secret (docs/mender.md, "Token keys"): every entry of at
// least MinTokenKeyBytes is a key, named by its entry; with several,
// entry "current" names the one that signs. Tokens carry the key's name
// (kid), so a rotation keeps tokens and links of the other keys valid
// while they are in the Secret.
const (
	// MinTokenKeyBytes is the shortest HMAC key accepted (256 bits).
	MinTokenKeyBytes = 32
	// TokenKeyCurrent names the signing key when there are several.
	TokenKeyCurrent = "current"
)

// Audiences tell device tokens and download links apart: a link never
// authenticates an API call, nor a device token a download.
const (
	audienceDevice   = "otaflow-mender-device"
	audienceDownload = "otaflow-mender-download"
	issuer           = "otaflow"
)

// ErrNoTokenKey: no key to sign with (the Secret is missing or empty).
var ErrNoTokenKey = errors.New("mender: no token key configured")

// TokenKeys is the set of HMAC keys device tokens and download links are
// signed and verified with. All replicas read the same Secret, so a token
// from one is valid at every other. Safe for concurrent use; Replace
// swaps the set at once.
type TokenKeys struct {
	m atomic.Pointer[tokenKeySet]
}

type tokenKeySet struct {
	keys    map[string][]byte
	current string
	// verified remembers device tokens this set verified, so a device
	// polling with the same token is not parsed and verified again. It
	// belongs to the set: a Replace starts with none remembered.
	verified *verifiedTokens
}

// maxVerified bounds the remembered tokens (about 100 bytes each); when
// full the memory is cleared, which only costs verifying again.
const maxVerified = 1 << 17

// verifiedTokens maps the SHA-256 of a verified device token to what it
// says.
type verifiedTokens struct {
	mu sync.RWMutex
	m  map[[32]byte]verifiedToken
}

type verifiedToken struct {
	deviceID, tenant string
	expires          time.Time
}

func (v *verifiedTokens) get(h [32]byte) (verifiedToken, bool) {
	v.mu.RLock()
	t, ok := v.m[h]
	v.mu.RUnlock()
	return t, ok
}

func (v *verifiedTokens) put(h [32]byte, t verifiedToken) {
	v.mu.Lock()
	if len(v.m) >= maxVerified {
		clear(v.m)
	}
	v.m[h] = t
	v.mu.Unlock()
}

// NewTokenKeys returns an empty set (every token refused until Replace).
func NewTokenKeys() *TokenKeys {
	k := &TokenKeys{}
	k.m.Store(&tokenKeySet{verified: newVerified()})
	return k
}

// Replace parses the Secret's data and swaps it in. On error the set is
// unchanged (the last good keys keep working) and the error says why.
func (k *TokenKeys) Replace(data map[string][]byte) error {
	set := &tokenKeySet{keys: map[string][]byte{}, verified: newVerified()}
	var short []string
	for name, v := range data {
		if name == TokenKeyCurrent {
			continue
		}
		if len(v) < MinTokenKeyBytes {
			short = append(short, name)
			continue
		}
		set.keys[name] = slices.Clone(v)
	}
	sort.Strings(short)
	switch cur, ok := data[TokenKeyCurrent]; {
	case len(set.keys) == 0 && len(short) > 0:
		return fmt.Errorf("mender token keys: entries %v are shorter than %d bytes", short, MinTokenKeyBytes)
	case len(set.keys) == 0:
		return fmt.Errorf("mender token keys: the Secret has no key")
	case ok:
		if _, found := set.keys[string(cur)]; !found {
			return fmt.Errorf("mender token keys: %q names %q, which is not a key of at least %d bytes", TokenKeyCurrent, cur, MinTokenKeyBytes)
		}
		set.current = string(cur)
	case len(set.keys) == 1:
		for name := range set.keys {
			set.current = name
		}
	default:
		return fmt.Errorf("mender token keys: %d keys and no %q entry naming the signing one", len(set.keys), TokenKeyCurrent)
	}
	k.m.Store(set)
	return nil
}

// Current is the signing key's name ("" when none).
func (k *TokenKeys) Current() string { return k.m.Load().current }

// claims are a device token's or a download link's.
type claims struct {
	jwt.RegisteredClaims
	// Tenant is the device's namespace.
	Tenant string `json:"otaflow.io/tenant,omitempty"`
	// Deployment and Blob, in a download link: the deployment it belongs
	// to and the encrypted blob it reads.
	Deployment string `json:"otaflow.io/deployment,omitempty"`
	Blob       string `json:"otaflow.io/blob,omitempty"`
}

func (k *TokenKeys) sign(c claims) (string, error) {
	set := k.m.Load()
	if set.current == "" {
		return "", ErrNoTokenKey
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = set.current
	s, err := t.SignedString(set.keys[set.current])
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// leeway is the clock skew allowed between replicas.
const leeway = 5 * time.Second

// parser accepts HS256 only (never "none" or a public-key algorithm a
// forged header could ask for), requires exp and the issuer, and allows
// a little clock skew between replicas.
func parser(audience string, now func() time.Time) *jwt.Parser {
	return jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	)
}

func (k *TokenKeys) verify(tok, audience string, now func() time.Time) (*claims, error) {
	return k.verifyWith(k.m.Load(), tok, audience, now)
}

func (k *TokenKeys) verifyWith(set *tokenKeySet, tok, audience string, now func() time.Time) (*claims, error) {
	var c claims
	_, err := parser(audience, now).ParseWithClaims(tok, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, ok := set.keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown key %q", kid)
		}
		return key, nil
	})
	if err != nil {
		return nil, err
	}
	if c.Subject == "" {
		return nil, errors.New("token without subject")
	}
	return &c, nil
}

// IssueDevice signs a device token for the device in the tenant, valid
// for ttl from now.
func (k *TokenKeys) IssueDevice(deviceID, tenant string, now time.Time, ttl time.Duration) (string, error) {
	return k.sign(claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: deviceID, Audience: jwt.ClaimStrings{audienceDevice},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Tenant: tenant,
	})
}

func newVerified() *verifiedTokens {
	return &verifiedTokens{m: map[[32]byte]verifiedToken{}}
}

// VerifyDevice checks a device token and returns its device ID and tenant.
// A token verified before by the same key set is looked up instead (its
// expiry still checked): a device polls with one token for its lifetime.
func (k *TokenKeys) VerifyDevice(tok string, now func() time.Time) (deviceID, tenant string, err error) {
	set := k.m.Load()
	h := sha256.Sum256([]byte(tok))
	if t, ok := set.verified.get(h); ok {
		if now().Before(t.expires.Add(leeway)) {
			return t.deviceID, t.tenant, nil
		}
		return "", "", jwt.ErrTokenExpired
	}
	c, err := k.verifyWith(set, tok, audienceDevice, now)
	if err != nil {
		return "", "", err
	}
	set.verified.put(h, verifiedToken{deviceID: c.Subject, tenant: c.Tenant, expires: c.ExpiresAt.Time})
	return c.Subject, c.Tenant, nil
}

// Link is what a download link grants: one device, one deployment, one
// blob.
type Link struct {
	DeviceID, Deployment, Blob string
	Expires                    time.Time
}

// IssueLink signs a download link token.
func (k *TokenKeys) IssueLink(l Link, now time.Time) (string, error) {
	return k.sign(claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: l.DeviceID, Audience: jwt.ClaimStrings{audienceDownload},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(l.Expires),
		},
		Deployment: l.Deployment, Blob: l.Blob,
	})
}

// VerifyLink checks a download link token.
func (k *TokenKeys) VerifyLink(tok string, now func() time.Time) (Link, error) {
	c, err := k.verify(tok, audienceDownload, now)
	if err != nil {
		return Link{}, err
	}
	if c.Deployment == "" || c.Blob == "" {
		return Link{}, errors.New("link without deployment or blob")
	}
	return Link{DeviceID: c.Subject, Deployment: c.Deployment, Blob: c.Blob, Expires: c.ExpiresAt.Time}, nil
}
