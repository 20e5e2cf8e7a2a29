package otaserver

import (
	"crypto/sha256"
	"errors"
	"maps"
	"sync/atomic"
	"time"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/enrolltoken"
	"github.com/otaflow/otaflow/internal/menderkey"
)

// Credential is what one bootstrap token admits: enrollments into a tenant
// (Namespace) through one DeviceEnrollment, within its limits. The
// cluster-wide enrollment Secret's tokens admit cluster-wide devices
// (Namespace and Name "").
type Credential struct {
	Namespace, Name string
	// ExpiresAt: zero is never.
	ExpiresAt time.Time
	// MaxDevices: 0 is no cap.
	MaxDevices int64
	// Allowed: nil admits any device ID.
	Allowed map[string]struct{}
	// DDI: how hawkBit DDI devices of this object are registered; nil when
	// it admits none (spec.ddi absent).
	DDI *DDISettings
	// Mender: how mender-client devices of this object are accepted and
	// registered; nil when it admits none (spec.mender absent).
	Mender *MenderSettings
}

// MenderSettings is a DeviceEnrollment's spec.mender as the Mender front
// needs it.
type MenderSettings struct {
	DeviceType string
	Labels     map[string]string
	// AutoAccept: any key presenting the tenant token is accepted.
	AutoAccept bool
	// Keys are the preauthorized public keys by SHA-256 of their DER
	// (PKIX) encoding.
	Keys map[[32]byte]struct{}
}

// Preauthorized reports whether the key (DER, PKIX) is preauthorized.
func (m *MenderSettings) Preauthorized(der []byte) bool {
	_, ok := m.Keys[sha256.Sum256(der)]
	return ok
}

// DDISettings is a DeviceEnrollment's spec.ddi as the DDI front needs it.
type DDISettings struct {
	// DeviceType and Labels are given to DDI devices at registration.
	DeviceType string
	Labels     map[string]string
	// Gateway: the enrollment token is accepted as a GatewayToken.
	Gateway bool
}

// Key is "namespace/name".
func (c *Credential) Key() string { return c.Namespace + "/" + c.Name }

// refuses says why the credential refuses the device ID at now ("" when
// it does not).
func (c *Credential) refuses(deviceID string, now time.Time) string {
	if !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt) {
		return "bootstrap token expired"
	}
	if c.Allowed != nil {
		if _, ok := c.Allowed[deviceID]; !ok {
			return "this device ID is not on the enrollment's allowlist"
		}
	}
	return ""
}

// CredentialSet holds the namespaced bootstrap credentials by the SHA-256
// of their token: a lookup hashes the presented token and indexes a map,
// so its time does not depend on how much of a valid token matched.
type CredentialSet struct {
	m atomic.Pointer[credentialMaps]
}

// credentialMaps are swapped together: DDI target tokens find their
// DeviceEnrollment's credential by key, and why it has none.
type credentialMaps struct {
	byHash   map[[32]byte]*Credential
	byKey    map[string]*Credential
	problems map[string]error
	// menderKeys finds the credential that preauthorizes a public key
	// (SHA-256 of its DER), for clients without a tenant token; a key
	// preauthorized by two objects is in neither (ambiguous tenant).
	menderKeys map[[32]byte]*Credential
}

// NewCredentialSet returns an empty set.
func NewCredentialSet() *CredentialSet {
	c := &CredentialSet{}
	c.Replace(nil)
	return c
}

// Replace swaps in a new set at once.
func (c *CredentialSet) Replace(m map[[32]byte]*Credential) { c.ReplaceWithProblems(m, nil) }

// ReplaceWithProblems swaps in a new set and, per "namespace/name", why a
// DeviceEnrollment has no credential (CompileCredentials' problems), which
// DDI refusals quote.
func (c *CredentialSet) ReplaceWithProblems(m map[[32]byte]*Credential, problems map[string]error) {
	byKey := make(map[string]*Credential, len(m))
	menderKeys := map[[32]byte]*Credential{}
	ambiguous := map[[32]byte]bool{}
	for _, cr := range m {
		byKey[cr.Key()] = cr
		if cr.Mender == nil {
			continue
		}
		for h := range cr.Mender.Keys {
			if other, dup := menderKeys[h]; dup && other != cr {
				ambiguous[h] = true
			}
			menderKeys[h] = cr
		}
	}
	for h := range ambiguous {
		delete(menderKeys, h)
	}
	c.m.Store(&credentialMaps{byHash: m, byKey: byKey, problems: problems, menderKeys: menderKeys})
}

// MenderCredential finds the credential a Mender auth request is for:
// the one whose token is the tenant token, or, without a tenant token,
// the one that preauthorizes the key (DER, PKIX). ok is false when none
// is (an unknown tenant token, or a key no single object preauthorizes).
func (c *CredentialSet) MenderCredential(tenantToken string, keyDER []byte) (*Credential, bool) {
	m := c.m.Load()
	if tenantToken == "" {
		cr, ok := m.menderKeys[sha256.Sum256(keyDER)]
		return cr, ok
	}
	if len(tenantToken) > otav1.MaxEnrollmentTokenLength {
		return nil, false
	}
	cr, ok := m.byHash[sha256.Sum256([]byte(tenantToken))]
	return cr, ok
}

// Refuses says why the credential admits no new device with the ID at
// now ("" when it admits it): expired, or not on its allowlist.
func (c *Credential) Refuses(deviceID string, now time.Time) string { return c.refuses(deviceID, now) }

// Len is the number of credentials.
func (c *CredentialSet) Len() int { return len(c.m.Load().byHash) }

func (c *CredentialSet) lookup(h [32]byte) (*Credential, bool) {
	cr, ok := c.m.Load().byHash[h]
	return cr, ok
}

// byKey finds a DeviceEnrollment's credential by namespace and name; when
// there is none, the error says why if known.
func (c *CredentialSet) byKey(namespace, name string) (*Credential, error) {
	m := c.m.Load()
	key := namespace + "/" + name
	if cr, ok := m.byKey[key]; ok {
		return cr, nil
	}
	if err := m.problems[key]; err != nil {
		return nil, err
	}
	return nil, errors.New("no such DeviceEnrollment")
}

// Credential finds a DeviceEnrollment's credential by namespace and name;
// when there is none, the error says why if known.
func (c *CredentialSet) Credential(namespace, name string) (*Credential, error) {
	return c.byKey(namespace, name)
}

// errDuplicateToken: two DeviceEnrollments share a token, so it would not
// say which tenant a device joins; both are refused.
var errDuplicateToken = errors.New("another DeviceEnrollment has the same token")

// CompileCredentials builds the set's map from DeviceEnrollments and their
// tokens (tokens[i] belongs to es[i]; nil when unreadable). It returns the
// map and, per "namespace/name", why an object enrolls nothing.
func CompileCredentials(es []otav1.DeviceEnrollment, tokens [][]byte) (map[[32]byte]*Credential, map[string]error) {
	out := map[[32]byte]*Credential{}
	problems := map[string]error{}
	owner := map[[32]byte]string{}
	for i := range es {
		e := &es[i]
		key := e.Namespace + "/" + e.Name
		if e.Spec.Suspend {
			problems[key] = errors.New("suspended")
			continue
		}
		tok := tokens[i]
		if tok == nil {
			problems[key] = errors.New("token Secret not readable")
			continue
		}
		if _, err := enrolltoken.Check(tok); err != nil {
			problems[key] = err
			continue
		}
		h := sha256.Sum256(tok)
		if other, dup := owner[h]; dup {
			problems[key], problems[other] = errDuplicateToken, errDuplicateToken
			delete(out, h)
			continue
		}
		owner[h] = key
		cr := &Credential{Namespace: e.Namespace, Name: e.Name}
		if e.Spec.ExpiresAt != nil {
			cr.ExpiresAt = e.Spec.ExpiresAt.Time
		}
		if e.Spec.MaxDevices != nil {
			cr.MaxDevices = *e.Spec.MaxDevices
		}
		if e.Spec.AllowedDeviceIDs != nil {
			cr.Allowed = make(map[string]struct{}, len(e.Spec.AllowedDeviceIDs))
			for _, id := range e.Spec.AllowedDeviceIDs {
				cr.Allowed[id] = struct{}{}
			}
		}
		if d := e.Spec.DDI; d != nil {
			cr.DDI = &DDISettings{DeviceType: d.DeviceType, Labels: maps.Clone(d.Labels), Gateway: d.GatewayToken}
		}
		if ms := e.Spec.Mender; ms != nil {
			cr.Mender = &MenderSettings{DeviceType: ms.DeviceType, Labels: maps.Clone(ms.Labels), AutoAccept: ms.AutoAccept, Keys: map[[32]byte]struct{}{}}
			// Unreadable keys are left out here; the manager's condition
			// names them.
			for _, pemKey := range ms.PreauthorizedKeys {
				if k, err := menderkey.Parse([]byte(pemKey)); err == nil {
					cr.Mender.Keys[sha256.Sum256(k.DER)] = struct{}{}
				}
			}
		}
		out[h] = cr
	}
	// A token seen three times was deleted at the second and re-added at
	// none; owner still marks it, so drop any survivor of a duplicate.
	for h, cr := range out {
		if problems[cr.Key()] != nil {
			delete(out, h)
		}
	}
	return out, problems
}
