package otaserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/otaflow/otaflow/protocol/v1/assignment"
)

// The signing-key Secret: a watch narrowed to its name, like the
// enrollment Secret's (docs/security.md). A different --signing-key-secret
// needs this Role's resourceNames changed too.
// +kubebuilder:rbac:groups="",namespace=system,resources=secrets,resourceNames=otaflow-assignment-key,verbs=get;list;watch

// Entries of the signing-key Secret besides the keys (docs/security.md,
// "Rotating the assignment signing key").
const (
	// SigningKeyCurrent names the key assignments are signed with: its key
	// ID, or the name of the entry holding it. Required with several keys.
	SigningKeyCurrent = "current"
	// SigningKeySerial is the key set's serial (decimal, 1 to 2^53−1),
	// raised with every change of keys. Required with several keys; a
	// lone key without it is serial 1.
	SigningKeySerial = "serial"
)

// AssignmentSigner signs assignments with the current key: an
// *assignment.Signer (one fixed key) or *SigningKeys (a key set that
// rotates).
type AssignmentSigner interface {
	Sign(assignment.Assignment) (assignment.Signed, error)
	KeyID() string
}

// SigningKeySet is a parsed signing-key Secret.
type SigningKeySet struct {
	Serial  int64
	Current *assignment.Signer
	// Keys are every key of the set, the current one included, ordered by
	// key ID.
	Keys []*assignment.Signer
}

func (s SigningKeySet) keyIDs() []string {
	ids := make([]string, len(s.Keys))
	for i, k := range s.Keys {
		ids[i] = k.KeyID()
	}
	return ids
}

// ParseSigningKeySecret reads the data of a signing-key Secret. Every
// entry whose name ends in ".pem", and the entry legacyKey
// (--signing-key-secret-key) whatever its name, holds one private key
// (assignment.ParsePrivateKeyPEM: PKCS#8 Ed25519 or ECDSA P-256, or SEC 1
// P-256). "current" and "serial" are described at SigningKeyCurrent and
// SigningKeySerial; any other entry is refused, so a misspelt one is not
// ignored. Every problem is reported, naming entries and key IDs, never
// key bytes.
func ParseSigningKeySecret(data map[string][]byte, legacyKey string) (SigningKeySet, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	byID := map[string]*assignment.Signer{}
	entryOf := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(data)) {
		switch {
		case name == SigningKeyCurrent || name == SigningKeySerial:
			continue
		case !strings.HasSuffix(name, ".pem") && name != legacyKey:
			bad("unknown entry %q (keys are *.pem entries; the others are %q and %q)", name, SigningKeyCurrent, SigningKeySerial)
			continue
		}
		key, err := assignment.ParsePrivateKeyPEM(data[name])
		if err != nil {
			bad("entry %q: %w", name, err) // the parser never echoes key bytes
			continue
		}
		s, err := assignment.NewSigner(key)
		if err != nil {
			bad("entry %q: %w", name, err)
			continue
		}
		if other, dup := entryOf[s.KeyID()]; dup {
			bad("entries %q and %q hold the same key %s", other, name, s.KeyID())
			continue
		}
		byID[s.KeyID()], entryOf[s.KeyID()] = s, name
	}
	set := SigningKeySet{Serial: 1}
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		set.Keys = append(set.Keys, byID[id])
	}
	switch {
	case len(set.Keys) == 0 && len(errs) == 0:
		bad("no key: put the PEM private key in an entry named *.pem")
	case len(set.Keys) > assignment.MaxKeySetKeys:
		bad("%d keys, at most %d", len(set.Keys), assignment.MaxKeySetKeys)
	}
	raw, hasSerial := data[SigningKeySerial]
	if hasSerial {
		n, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		if err != nil || n < 1 || n > assignment.MaxKeySetSerial {
			bad("%s %q is not an integer from 1 to %d", SigningKeySerial, strings.TrimSpace(string(raw)), int64(assignment.MaxKeySetSerial))
		}
		set.Serial = n
	} else if len(set.Keys) > 1 {
		bad("%s is required with several keys: the key set's version, raised with every change of keys", SigningKeySerial)
	}
	cur, hasCurrent := data[SigningKeyCurrent]
	want := strings.TrimSpace(string(cur))
	switch {
	case hasCurrent:
		if s := byID[strings.ToLower(want)]; s != nil {
			set.Current = s
		} else if id, ok := idOfEntry(entryOf, want); ok {
			set.Current = byID[id]
		} else {
			bad("%s %q names no key of the Secret (key IDs %s)", SigningKeyCurrent, want, strings.Join(set.keyIDs(), ", "))
		}
	case len(set.Keys) == 1:
		set.Current = set.Keys[0]
	case len(set.Keys) > 1:
		bad("%s is required with several keys: the key ID (or entry name) of the key to sign with", SigningKeyCurrent)
	}
	if len(errs) > 0 {
		return SigningKeySet{}, fmt.Errorf("signing-key Secret: %w", errors.Join(errs...))
	}
	return set, nil
}

func idOfEntry(entryOf map[string]string, name string) (string, bool) {
	for id, e := range entryOf {
		if e == name {
			return id, true
		}
	}
	return "", false
}

// SigningKeys is the key set the server signs assignments with and
// publishes at GET /v1/keys. It is safe for concurrent use: Load swaps the
// whole set at once, so an assignment is signed by the set of before or
// of after, and GET /v1/info and /v1/keys answer with one set.
type SigningKeys struct {
	cur atomic.Pointer[signingState]
	mu  sync.Mutex // serializes Load and Update
	// lastErr is the last refusal, for the start-up error.
	lastErr error

	serial  prometheus.Gauge
	refused prometheus.Counter
	stale   prometheus.Gauge
}

type signingState struct {
	set SigningKeySet
	ids []string // current first, then the others by key ID
	doc []byte   // the encoded assignment.SignedKeySet
}

// NewSigningKeys returns an empty key set (Sign fails until the first
// Load) whose metrics are registered with reg (none when nil).
func NewSigningKeys(reg prometheus.Registerer) *SigningKeys {
	k := &SigningKeys{
		serial: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otaflow_ota_signing_key_set_serial", Help: "Serial of the assignment key set in use.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otaflow_ota_signing_key_set_refused_total", Help: "Signing-key Secret versions refused; the last good key set stayed in use.",
		}),
		stale: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otaflow_ota_signing_key_secret_refused", Help: "1 while the newest signing-key Secret version is refused and an older key set signs.",
		}),
	}
	if reg != nil {
		reg.MustRegister(k.serial, k.refused, k.stale)
	}
	return k
}

// SigningKeysFrom returns the key set of one fixed key at serial 1.
func SigningKeysFrom(s *assignment.Signer) (*SigningKeys, error) {
	if s == nil {
		return nil, errors.New("otaserver: nil signer")
	}
	k := NewSigningKeys(nil)
	if err := k.Load(SigningKeySet{Serial: 1, Current: s, Keys: []*assignment.Signer{s}}); err != nil {
		return nil, err
	}
	return k, nil
}

// signingKeysOf returns the key set behind a Config.Signer.
func signingKeysOf(s AssignmentSigner) (*SigningKeys, error) {
	switch k := s.(type) {
	case *SigningKeys:
		if k != nil {
			return k, nil
		}
	case *assignment.Signer:
		return SigningKeysFrom(k)
	}
	return nil, fmt.Errorf("otaserver: Signer is %T; want an *assignment.Signer or *otaserver.SigningKeys", s)
}

// Load makes set the key set in use, unless it would move backwards: a
// serial below the one in use, or the same serial with other keys (a
// changed set of keys needs a higher serial, or devices would refuse it as
// a replay). The same keys at the same serial with another current key
// switch the signing key only.
func (k *SigningKeys) Load(set SigningKeySet) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.load(set)
}

func (k *SigningKeys) load(set SigningKeySet) error {
	if set.Current == nil || !slices.Contains(set.Keys, set.Current) {
		return errors.New("signing keys: the current key is not in the set")
	}
	if old := k.cur.Load(); old != nil {
		switch {
		case set.Serial < old.set.Serial:
			return fmt.Errorf("signing-key Secret: serial %d is below the serial %d in use; a key set's serial never decreases", set.Serial, old.set.Serial)
		case set.Serial == old.set.Serial && !slices.Equal(set.keyIDs(), old.set.keyIDs()):
			return fmt.Errorf("signing-key Secret: the keys changed but serial stayed %d; raise serial with every change of keys", set.Serial)
		}
	}
	doc, err := assignment.SignKeySet(set.Serial, set.Keys...)
	if err != nil {
		return fmt.Errorf("signing keys: publish the key set: %w", err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("signing keys: encode the key set: %w", err)
	}
	st := &signingState{set: set, ids: []string{set.Current.KeyID()}, doc: b}
	for _, s := range set.Keys {
		if s != set.Current {
			st.ids = append(st.ids, s.KeyID())
		}
	}
	k.cur.Store(st)
	k.serial.Set(float64(set.Serial))
	return nil
}

// Update parses the data of a new version of the signing-key Secret
// (ParseSigningKeySecret) and loads it. A version that does not parse or
// would move backwards is refused and counted; the set in use stays. It
// reports whether the set or its current key changed.
func (k *SigningKeys) Update(data map[string][]byte, legacyKey string) (changed bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	set, err := ParseSigningKeySecret(data, legacyKey)
	if err == nil {
		old := k.cur.Load()
		if old != nil && set.Serial == old.set.Serial && slices.Equal(set.keyIDs(), old.set.keyIDs()) && set.Current.KeyID() == old.set.Current.KeyID() {
			k.lastErr = nil
			k.stale.Set(0)
			return false, nil // a resync, or metadata changed
		}
		err = k.load(set)
	}
	if err != nil {
		k.refuse(err)
		return false, err
	}
	k.lastErr = nil
	k.stale.Set(0)
	return true, nil
}

// refuse counts a refused Secret version. Call with mu held.
func (k *SigningKeys) refuse(err error) {
	k.lastErr = err
	k.refused.Inc()
	if k.cur.Load() != nil {
		k.stale.Set(1)
	}
}

func (k *SigningKeys) state() (*signingState, error) {
	st := k.cur.Load()
	if st == nil {
		return nil, errors.New("signing keys: no key set loaded")
	}
	return st, nil
}

// Sign signs a with the current key.
func (k *SigningKeys) Sign(a assignment.Assignment) (assignment.Signed, error) {
	st, err := k.state()
	if err != nil {
		return assignment.Signed{}, err
	}
	return st.set.Current.Sign(a)
}

// KeyID is the current key's ID ("" before the first Load).
func (k *SigningKeys) KeyID() string {
	if st := k.cur.Load(); st != nil {
		return st.ids[0]
	}
	return ""
}

// KeyIDs are the IDs of the set's keys, current first.
func (k *SigningKeys) KeyIDs() []string {
	if st := k.cur.Load(); st != nil {
		return slices.Clone(st.ids)
	}
	return nil
}

// Serial is the serial of the set in use (0 before the first Load).
func (k *SigningKeys) Serial() int64 {
	if st := k.cur.Load(); st != nil {
		return st.set.Serial
	}
	return 0
}

// Document is the signed key set as GET /v1/keys answers it.
func (k *SigningKeys) Document() ([]byte, error) {
	st, err := k.state()
	if err != nil {
		return nil, err
	}
	return st.doc, nil
}

// keys answers GET /v1/keys: the signed key set. It needs no
// authentication: it holds public keys only, and a device that lost its
// token must still be able to learn them.
func (s *Server) keys(w http.ResponseWriter, r *http.Request) {
	doc, err := s.cfg.Signer.(*SigningKeys).Document()
	if err != nil {
		s.internal(w, r, "keys", err)
		return
	}
	writeJSON(w, http.StatusOK, json.RawMessage(doc))
}

// WatchSigningKeySecret keeps keys equal to the signing-key Secret
// namespace/name until ctx ends, through a cache narrowed to that name (a
// metadata.name field selector, which RBAC authorizes by resourceNames, as
// WatchTokenSecret does). Every replica watches the same Secret, so all
// converge on the same set. It blocks until the first version was read (at
// most a minute) and fails when the Secret is missing or refused then:
// without a key the server cannot sign. Later versions that are refused (and a deletion)
// leave the last good set in use: they are logged and counted, and signing
// never stops.
func WatchSigningKeySecret(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, namespace, name, legacyKey string, keys *SigningKeys, log logr.Logger) error {
	c, inf, err := namedSecretInformer(ctx, cfg, scheme, namespace, name)
	if err != nil {
		return fmt.Errorf("signing-key Secret: %w", err)
	}
	update := func(obj any) {
		s, ok := obj.(*corev1.Secret)
		if !ok || s.Name != name {
			return
		}
		changed, err := keys.Update(s.Data, legacyKey)
		switch {
		case err != nil && keys.Serial() > 0:
			log.Error(err, "signing-key Secret refused; the last good key set stays in use", "secret", namespace+"/"+name,
				"resourceVersion", s.ResourceVersion, "serial", keys.Serial(), "current", keys.KeyID())
		case err != nil:
			log.Error(err, "signing-key Secret refused", "secret", namespace+"/"+name, "resourceVersion", s.ResourceVersion)
		case changed:
			log.Info("assignment key set loaded", "serial", keys.Serial(), "current", keys.KeyID(), "keys", keys.KeyIDs())
		}
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, o any) { update(o) },
		DeleteFunc: func(any) {
			keys.mu.Lock()
			keys.refuse(errors.New("signing-key Secret deleted"))
			keys.mu.Unlock()
			log.Error(nil, "signing-key Secret deleted; the last key set stays in use until the server restarts", "secret", namespace+"/"+name, "serial", keys.Serial())
		},
	})
	if err != nil {
		return fmt.Errorf("signing-key Secret handler: %w", err)
	}
	go func() { _ = c.Start(ctx) }()
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !c.WaitForCacheSync(syncCtx) || !toolscache.WaitForCacheSync(syncCtx.Done(), reg.HasSynced) {
		return fmt.Errorf("signing-key Secret %s/%s: not read within a minute", namespace, name)
	}
	if keys.Serial() == 0 {
		keys.mu.Lock()
		err := keys.lastErr
		keys.mu.Unlock()
		if err == nil {
			err = errors.New("not found")
		}
		return fmt.Errorf("signing-key Secret %s/%s: %w", namespace, name, err)
	}
	return nil
}
