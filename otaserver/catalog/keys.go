package catalog

import (
	"context"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// Content keys are read with a direct GET per key Secret, never through an
// informer: a Secret informer, even one narrowed by a label selector, is a
// cluster-wide list and watch of Secrets, and RBAC cannot scope list/watch
// by label. GET by name needs only the `get` verb. Key Secrets are immutable
// and named after their blob's digest (controllers/release_artifact.go), so
// a key once read stays right for as long as a release points at it; the
// TTL only notices a key Secret deleted behind the release's back.
const (
	// DefaultKeyTTL is how long a key read from the API server is used
	// before it is read again.
	DefaultKeyTTL = 10 * time.Minute
	// keyRetryMin and keyRetryMax bound the backoff after a failed read (a
	// Secret not found yet, the API server unreachable).
	keyRetryMin = 500 * time.Millisecond
	keyRetryMax = time.Minute
)

// keyEntry is one content-key Secret as the catalog keeps it: only the
// release-UID label and the key, nothing else of the Secret.
type keyEntry struct {
	secret   *corev1.Secret // nil until read, or when it does not exist
	wantUID  string         // the release UID the Secret must carry
	due      time.Time      // next read
	failures int
}

// keyLoader keeps the content keys of servable releases in memory.
type keyLoader struct {
	reader   client.Reader // uncached: every read is a GET by name
	ttl      time.Duration
	now      func() time.Time
	log      logr.Logger
	onChange func()

	mu      sync.Mutex
	entries map[string]*keyEntry // "namespace/name" of the Secret

	kick   chan struct{}
	loaded chan struct{} // closed after the first full pass
	once   sync.Once
}

func newKeyLoader(r client.Reader, ttl time.Duration, onChange func()) *keyLoader {
	return &keyLoader{
		reader: r, ttl: ttl, now: time.Now, log: logr.Discard(), onChange: onChange,
		entries: map[string]*keyEntry{},
		kick:    make(chan struct{}, 1),
		loaded:  make(chan struct{}),
	}
}

// poke asks for a pass soon (a release changed).
func (l *keyLoader) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// run reads keys until ctx ends: on every release change and whenever an
// entry falls due.
func (l *keyLoader) run(ctx context.Context, releases func(context.Context) ([]otav1.FirmwareRelease, error)) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-timer.C:
		}
		next := l.pass(ctx, releases)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// pass reads the keys that are missing or due and forgets the ones no
// servable release names. It returns the delay until the next entry is due.
func (l *keyLoader) pass(ctx context.Context, releases func(context.Context) ([]otav1.FirmwareRelease, error)) time.Duration {
	rels, err := releases(ctx)
	if err != nil {
		l.log.Error(err, "list releases for content keys")
		return keyRetryMin
	}
	want := map[string]string{}
	for i := range rels {
		if a := servableArtifact(&rels[i]); a != nil && a.KeySecretName != "" {
			want[rels[i].Namespace+"/"+a.KeySecretName] = string(rels[i].UID)
		}
	}
	changed := false
	l.mu.Lock()
	for k := range l.entries {
		if _, ok := want[k]; !ok {
			delete(l.entries, k)
			changed = true
		}
	}
	var due []string
	now := l.now()
	for k, uid := range want {
		e := l.entries[k]
		switch {
		case e == nil:
			l.entries[k] = &keyEntry{wantUID: uid}
			due = append(due, k)
		case e.wantUID != uid:
			// The release was recreated under the same name: read again now.
			e.wantUID, e.failures = uid, 0
			due = append(due, k)
			changed = true
		case !now.Before(e.due):
			due = append(due, k)
		}
	}
	l.mu.Unlock()

	for _, k := range due {
		if ctx.Err() != nil {
			return keyRetryMin
		}
		changed = l.read(ctx, k) || changed
	}
	l.once.Do(func() { close(l.loaded) })
	if changed {
		l.onChange()
	}
	return l.nextDue()
}

// read GETs one key Secret and reports whether what the catalog serves
// changed.
func (l *keyLoader) read(ctx context.Context, k string) bool {
	ns, name, _ := strings.Cut(k, "/")
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var s corev1.Secret
	err := l.reader.Get(rctx, client.ObjectKey{Namespace: ns, Name: name}, &s)

	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[k]
	if e == nil { // forgotten meanwhile
		return false
	}
	now := l.now()
	switch {
	case err == nil && s.Labels[otav1.LabelReleaseUID] == e.wantUID:
		old := e.secret
		e.secret = trimKeySecret(&s)
		e.failures = 0
		// Jitter spreads the re-reads of keys loaded together.
		e.due = now.Add(l.ttl - time.Duration(rand.Int64N(int64(l.ttl/10)+1)))
		return old == nil || !maps.EqualFunc(old.Data, e.secret.Data, func(a, b []byte) bool { return string(a) == string(b) })
	case err == nil || apierrors.IsNotFound(err):
		// Missing, or a leftover of another release of the same name:
		// nothing to serve until the manager writes the right one.
		old := e.secret
		e.secret = nil
		e.due = now.Add(backoff(e.failures))
		e.failures++
		return old != nil
	default:
		// A transient error keeps the key already read: an API server
		// outage must not stop devices from being served.
		l.log.Error(err, "read content-key Secret", "secret", k)
		e.due = now.Add(backoff(e.failures))
		e.failures++
		return false
	}
}

func (l *keyLoader) nextDue() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.ttl
	now := l.now()
	for _, e := range l.entries {
		if d := e.due.Sub(now); d < next {
			next = d
		}
	}
	return max(next, 10*time.Millisecond)
}

// secrets returns the keys read so far, as Build takes them.
func (l *keyLoader) secrets() map[string]*corev1.Secret {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]*corev1.Secret, len(l.entries))
	for k, e := range l.entries {
		if e.secret != nil {
			out[k] = e.secret
		}
	}
	return out
}

func backoff(failures int) time.Duration {
	d := keyRetryMin << min(failures, 10)
	return min(d, keyRetryMax)
}

// trimKeySecret keeps what Build reads, so no other Secret data is held.
func trimKeySecret(s *corev1.Secret) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: s.Namespace, Name: s.Name,
			Labels: map[string]string{otav1.LabelReleaseUID: s.Labels[otav1.LabelReleaseUID]},
		},
		Data: map[string][]byte{otav1.ContentKeyField: s.Data[otav1.ContentKeyField]},
	}
}

// servableArtifact is the release's artifact when the OTA server may serve
// it: Ready, not being deleted, and confirmed for the current generation,
// version and security version (so a new spec is never paired with bytes
// verified against the old one). Nil otherwise.
func servableArtifact(fr *otav1.FirmwareRelease) *otav1.Artifact {
	a := fr.Status.Artifact
	if a == nil || fr.DeletionTimestamp != nil || !meta.IsStatusConditionTrue(fr.Status.Conditions, otav1.ConditionReady) {
		return nil
	}
	if a.Generation != fr.Generation || a.Version != fr.Spec.Version || a.SecurityVersion != fr.Spec.SecurityVersion {
		return nil
	}
	return a
}
