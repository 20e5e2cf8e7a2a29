package otaserver

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/enrolltoken"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// hawkBit DDI authentication (docs/security.md, "hawkBit DDI devices").
// A DDI tenant is a namespace; cluster-wide devices have none. Devices
// present `Authorization: TargetToken <t>`, a token of their own from a
// DeviceEnrollment's spec.ddi.targetTokensSecretRef, or `GatewayToken <t>`,
// the DeviceEnrollment's token when spec.ddi.gatewayToken is set.

// ddiHashDomain separates DDI target-token hashes from the native bearer
// token hashes (hashToken): a DDI token never authenticates on the native
// API, nor a native token on DDI.
const ddiHashDomain = "otaflow-ddi/v1\x00"

// DDITokenHash is the key of a target token in DDITokens:
// SHA-256("otaflow-ddi/v1\x00" || token).
func DDITokenHash(tok []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(ddiHashDomain))
	h.Write(tok)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// DDITarget is the one device a target token authenticates.
type DDITarget struct {
	// Namespace (the DDI tenant) and Enrollment name the DeviceEnrollment
	// whose Secret holds the token.
	Namespace, Enrollment string
	// DeviceID is the controllerId.
	DeviceID string
}

// DDITokens holds the DDI target tokens by DDITokenHash, swapped whole
// like CredentialSet: a lookup hashes the presented token and indexes a
// map, never comparing secrets byte by byte.
type DDITokens struct {
	m atomic.Pointer[ddiTokenMaps]
}

type ddiTokenMaps struct {
	byHash map[[32]byte]DDITarget
	// devices with a target token, "namespace/id": the gateway token never
	// acts for them.
	devices map[string]struct{}
}

// NewDDITokens returns an empty set.
func NewDDITokens() *DDITokens {
	t := &DDITokens{}
	t.Replace(nil)
	return t
}

// Replace swaps in a new set at once.
func (t *DDITokens) Replace(m map[[32]byte]DDITarget) {
	devices := make(map[string]struct{}, len(m))
	for _, tg := range m {
		devices[tg.Namespace+"/"+tg.DeviceID] = struct{}{}
	}
	t.m.Store(&ddiTokenMaps{byHash: m, devices: devices})
}

// Len is the number of target tokens.
func (t *DDITokens) Len() int { return len(t.m.Load().byHash) }

func (t *DDITokens) lookup(h [32]byte) (DDITarget, bool) {
	tg, ok := t.m.Load().byHash[h]
	return tg, ok
}

func (t *DDITokens) hasDevice(namespace, id string) bool {
	_, ok := t.m.Load().devices[namespace+"/"+id]
	return ok
}

// maxReportedEntries bounds how many bad Secret keys a problem names.
const maxReportedEntries = 3

// CompileDDITokens builds the DDITokens map from DeviceEnrollments, their
// enrollment tokens (tokens[i], nil when unread) and the data of their
// target-tokens Secrets (secrets[i], nil when absent or not configured).
// Entries of objects without spec.ddi are ignored; suspended objects keep
// theirs (suspension stops registrations, not registered devices). Dropped
// and reported per "namespace/name", naming keys but never tokens: entries
// enrolltoken.CheckDDITarget refuses, a token that is also an enrollment token, a
// token in two entries (all of them), and a controllerId with entries in
// two DeviceEnrollments of one namespace (all of them: which enrollment
// it belongs to would be ambiguous).
func CompileDDITokens(es []otav1.DeviceEnrollment, tokens [][]byte, secrets []map[string][]byte) (map[[32]byte]DDITarget, map[string]error) {
	bootstrap := map[[32]byte]bool{}
	for _, tok := range tokens {
		if tok != nil {
			bootstrap[DDITokenHash(tok)] = true
		}
	}
	type entry struct {
		h   [32]byte
		tg  DDITarget
		obj string
	}
	var entries []entry
	bad := map[string][]string{} // "namespace/name" → problems
	report := func(obj, msg string) { bad[obj] = append(bad[obj], msg) }
	hashes := map[[32]byte]int{}
	devices := map[string]map[string]bool{} // "namespace/id" → objects
	for i := range es {
		e := &es[i]
		if e.Spec.DDI == nil || e.Spec.DDI.TargetTokensSecretRef == nil || i >= len(secrets) {
			continue
		}
		obj := e.Namespace + "/" + e.Name
		keys := make([]string, 0, len(secrets[i]))
		for k := range secrets[i] {
			keys = append(keys, k)
		}
		slices.Sort(keys) // stable reports
		for _, k := range keys {
			tok := secrets[i][k]
			if why := enrolltoken.CheckDDITarget(k, tok); why != "" {
				report(obj, fmt.Sprintf("key %q: %s", k, why))
				continue
			}
			h := DDITokenHash(tok)
			if bootstrap[h] {
				report(obj, fmt.Sprintf("key %q: the token is also a DeviceEnrollment's token", k))
				continue
			}
			hashes[h]++
			dk := e.Namespace + "/" + k
			if devices[dk] == nil {
				devices[dk] = map[string]bool{}
			}
			devices[dk][obj] = true
			entries = append(entries, entry{h: h, tg: DDITarget{Namespace: e.Namespace, Enrollment: e.Name, DeviceID: k}, obj: obj})
		}
	}
	out := make(map[[32]byte]DDITarget, len(entries))
	for _, en := range entries {
		switch {
		case hashes[en.h] > 1:
			report(en.obj, fmt.Sprintf("key %q: the same token is in another entry", en.tg.DeviceID))
		case len(devices[en.tg.Namespace+"/"+en.tg.DeviceID]) > 1:
			report(en.obj, fmt.Sprintf("key %q: another DeviceEnrollment of the namespace has a target token for this controllerId", en.tg.DeviceID))
		default:
			out[en.h] = en.tg
		}
	}
	problems := make(map[string]error, len(bad))
	for obj, msgs := range bad {
		shown := msgs[:min(len(msgs), maxReportedEntries)]
		more := ""
		if n := len(msgs) - len(shown); n > 0 {
			more = fmt.Sprintf(" (and %d more)", n)
		}
		problems[obj] = fmt.Errorf("%d unusable target tokens: %s%s", len(msgs), strings.Join(shown, "; "), more)
	}
	return out, problems
}

// Errors of AuthenticateDDI. Each of these wraps ErrDDIUnauthenticated:
// the client gets 401 whichever it is, the log the precise one.
var (
	// ErrDDIUnauthenticated: the header proves nothing for this path.
	ErrDDIUnauthenticated = errors.New("ddi: not authenticated")
	// ErrDDINoCredentials: no Authorization header, another scheme, or a
	// garbled token.
	ErrDDINoCredentials = errors.New("no TargetToken or GatewayToken credentials")
	// ErrDDIUnknownToken: no device or DeviceEnrollment has this token.
	ErrDDIUnknownToken = errors.New("unknown token")
	// ErrDDIWrongTarget: the token is valid, but for another controllerId
	// or tenant, or a GatewayToken on a controllerId with its own target
	// token.
	ErrDDIWrongTarget = errors.New("token of another device or tenant")
	// ErrDDIGatewayDisabled: a DeviceEnrollment's token presented as a
	// GatewayToken while its spec.ddi.gatewayToken is not set.
	ErrDDIGatewayDisabled = errors.New("gateway token not enabled on the DeviceEnrollment")
	// ErrDDIBadControllerID: the controllerId is not a device ID (404).
	ErrDDIBadControllerID = errors.New("controllerId is not a device ID")
)

func unauthenticated(kind error, detail string) error {
	if detail == "" {
		return fmt.Errorf("%w: %w", ErrDDIUnauthenticated, kind)
	}
	return fmt.Errorf("%w: %w: %s", ErrDDIUnauthenticated, kind, detail)
}

// DDIRefusedError: the token is valid for the controllerId, but its
// DeviceEnrollment registers no device now (expired, suspended or without
// a usable token, spec.ddi removed, allowlist). 403 with Reason.
type DDIRefusedError struct {
	// Enrollment is "namespace/name".
	Enrollment string
	Reason     string
}

func (e *DDIRefusedError) Error() string {
	return "DeviceEnrollment " + e.Enrollment + " registers no device: " + e.Reason
}

// DDIStatus is the HTTP status for an AuthenticateDDI error: 401, 403 for
// a *DDIRefusedError, 404 for a controllerId that is no device ID, 200 for
// nil.
func DDIStatus(err error) int {
	var refused *DDIRefusedError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrDDIBadControllerID):
		return http.StatusNotFound
	case errors.As(err, &refused):
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// DDIAuth is who a DDI request authenticated as.
type DDIAuth struct {
	// Namespace (the tenant) and Enrollment name the DeviceEnrollment the
	// token belongs to.
	Namespace, Enrollment string
	// Credential carries its limits and spec.ddi; nil when it has none
	// now (then the error is a *DDIRefusedError).
	Credential *Credential
	// Gateway: authenticated by the GatewayToken, which never acts for a
	// device registered through a target token or enrolled natively (the
	// handler checks the stored device).
	Gateway bool
}

// DDIAuthenticator authenticates hawkBit DDI requests from the
// DeviceEnrollment credentials and the target tokens.
type DDIAuthenticator struct {
	Creds   *CredentialSet
	Targets *DDITokens
}

// AuthenticateDDI checks an Authorization header value for the path's
// tenant (namespace) and controllerId at now. Schemes TargetToken and
// GatewayToken are case-insensitive. Errors wrap ErrDDIUnauthenticated
// (401: see the Err* values), ErrDDIBadControllerID (404), or are a
// *DDIRefusedError (403).
//
// A *DDIRefusedError refuses registrations only: it comes with the DDIAuth
// filled in, since the token was proven, and a device registered earlier
// may still be served — as natively enrolled devices keep working after
// their DeviceEnrollment expires, is suspended or drops them from its
// allowlist. The handler must refuse to register a device then.
func (a DDIAuthenticator) AuthenticateDDI(header, tenantNamespace, controllerID string, now time.Time) (DDIAuth, error) {
	if protov1.ValidateDeviceID(controllerID) != nil {
		return DDIAuth{}, ErrDDIBadControllerID
	}
	scheme, tok, err := parseDDIAuthorization(header)
	if err != nil {
		return DDIAuth{}, unauthenticated(ErrDDINoCredentials, err.Error())
	}
	if scheme == schemeTarget {
		return a.target(tok, tenantNamespace, controllerID, now)
	}
	return a.gateway(tok, tenantNamespace, controllerID, now)
}

func (a DDIAuthenticator) target(tok, tenant, id string, now time.Time) (DDIAuth, error) {
	if a.Targets == nil {
		return DDIAuth{}, unauthenticated(ErrDDIUnknownToken, "")
	}
	tg, ok := a.Targets.lookup(DDITokenHash([]byte(tok)))
	if !ok {
		return DDIAuth{}, unauthenticated(ErrDDIUnknownToken, "")
	}
	if tg.Namespace != tenant || tg.DeviceID != id {
		return DDIAuth{}, unauthenticated(ErrDDIWrongTarget, "")
	}
	auth := DDIAuth{Namespace: tg.Namespace, Enrollment: tg.Enrollment}
	key := tg.Namespace + "/" + tg.Enrollment
	if a.Creds == nil {
		return auth, &DDIRefusedError{Enrollment: key, Reason: "no DeviceEnrollment credentials"}
	}
	cr, err := a.Creds.byKey(tg.Namespace, tg.Enrollment)
	if err != nil {
		return auth, &DDIRefusedError{Enrollment: key, Reason: err.Error()}
	}
	auth.Credential = cr
	return auth, refusal(cr, id, now)
}

func (a DDIAuthenticator) gateway(tok, tenant, id string, now time.Time) (DDIAuth, error) {
	if a.Creds == nil || len(tok) > otav1.MaxEnrollmentTokenLength {
		return DDIAuth{}, unauthenticated(ErrDDIUnknownToken, "")
	}
	// The enrollment token's own hash domain: it is the same token.
	cr, ok := a.Creds.lookup(sha256.Sum256([]byte(tok)))
	if !ok {
		return DDIAuth{}, unauthenticated(ErrDDIUnknownToken, "")
	}
	if cr.Namespace != tenant {
		return DDIAuth{}, unauthenticated(ErrDDIWrongTarget, "")
	}
	if cr.DDI == nil || !cr.DDI.Gateway {
		return DDIAuth{}, unauthenticated(ErrDDIGatewayDisabled, cr.Key())
	}
	if a.Targets != nil && a.Targets.hasDevice(tenant, id) {
		return DDIAuth{}, unauthenticated(ErrDDIWrongTarget, "this controllerId has its own target token")
	}
	auth := DDIAuth{Namespace: cr.Namespace, Enrollment: cr.Name, Credential: cr, Gateway: true}
	return auth, refusal(cr, id, now)
}

// refusal: why cr registers no device id at now, or nil.
func refusal(cr *Credential, id string, now time.Time) error {
	if cr.DDI == nil {
		return &DDIRefusedError{Enrollment: cr.Key(), Reason: "spec.ddi is not set"}
	}
	if why := cr.refuses(id, now); why != "" {
		return &DDIRefusedError{Enrollment: cr.Key(), Reason: why}
	}
	return nil
}

const (
	schemeTarget  = "targettoken"
	schemeGateway = "gatewaytoken"
)

// parseDDIAuthorization splits an Authorization value into its scheme
// (lowercased: TargetToken or GatewayToken, any case) and token: one or
// more spaces between them, surrounding blanks ignored, the token 1–512
// bytes of visible ASCII.
func parseDDIAuthorization(h string) (scheme, tok string, err error) {
	h = strings.Trim(h, " \t")
	if h == "" {
		return "", "", errors.New("no Authorization header")
	}
	s, rest, ok := strings.Cut(h, " ")
	if !ok {
		return "", "", errors.New("no token after the scheme")
	}
	// ASCII case folding only: strings.EqualFold would also take the
	// Kelvin sign for a k.
	scheme = asciiLower(s)
	if scheme != schemeTarget && scheme != schemeGateway {
		return "", "", errors.New("the scheme is neither TargetToken nor GatewayToken")
	}
	tok = strings.TrimLeft(rest, " ")
	switch {
	case tok == "":
		return "", "", errors.New("empty token")
	case len(tok) > otav1.MaxEnrollmentTokenLength:
		return "", "", fmt.Errorf("token longer than %d bytes", otav1.MaxEnrollmentTokenLength)
	case !otav1.HeaderSafeToken([]byte(tok)):
		return "", "", errors.New("the token holds spaces or control characters")
	}
	return scheme, tok, nil
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
