package otaserver

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
)

// DeviceEnrollments, cluster-wide: the namespaced bootstrap credentials.
// Their token Secrets are read by name with the Secret get rule above.
// +kubebuilder:rbac:groups=ota.otaflow.io,resources=deviceenrollments,verbs=get;list;watch

// CredentialWatchOptions tune WatchCredentials.
type CredentialWatchOptions struct {
	// Resync re-reads every token (and DDI target-tokens) Secret this
	// often: the server may not watch Secrets, so a token changed in its
	// Secret (without a change of the DeviceEnrollment) takes effect within
	// this time. Default 1 min.
	Resync time.Duration
	// Namespaces limits the DeviceEnrollments watched (empty: all), as the
	// server's --namespaces limits what it serves.
	Namespaces []string
	// Timeout bounds each Secret read (default 10 s).
	Timeout time.Duration
	// DDITargets, when set, is kept equal to the hawkBit DDI target tokens
	// of the DeviceEnrollments' spec.ddi.targetTokensSecretRef Secrets,
	// read by name like the token Secrets (nil: those are not read).
	DDITargets *DDITokens
	Log        logr.Logger
}

// WatchCredentials keeps set (and o.DDITargets) equal to the
// DeviceEnrollments of the cluster and their tokens until ctx ends. It
// blocks until the first set is built.
func WatchCredentials(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, set *CredentialSet, o CredentialWatchOptions) error {
	if o.Resync <= 0 {
		o.Resync = time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	copts := cache.Options{Scheme: scheme}
	if len(o.Namespaces) > 0 {
		copts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range o.Namespaces {
			copts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(cfg, copts)
	if err != nil {
		return fmt.Errorf("DeviceEnrollment cache: %w", err)
	}
	direct, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("DeviceEnrollment client: %w", err)
	}
	inf, err := c.GetInformer(ctx, &otav1.DeviceEnrollment{})
	if err != nil {
		return fmt.Errorf("DeviceEnrollment informer: %w", err)
	}
	poke := make(chan struct{}, 1)
	mark := func(any) {
		select {
		case poke <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: mark, UpdateFunc: func(_, o any) { mark(o) }, DeleteFunc: mark,
	}); err != nil {
		return fmt.Errorf("DeviceEnrollment handler: %w", err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return fmt.Errorf("DeviceEnrollment cache did not sync")
	}
	w := &credentialWatch{cache: c, secrets: direct, set: set, o: o}
	if err := w.rebuild(ctx); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(o.Resync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-poke:
			case <-t.C:
			}
			if err := w.rebuild(ctx); err != nil && ctx.Err() == nil {
				o.Log.Error(err, "rebuild enrollment credentials")
			}
		}
	}()
	return nil
}

type credentialWatch struct {
	cache   cache.Cache
	secrets client.Reader
	set     *CredentialSet
	o       CredentialWatchOptions
	last    map[string]string // problems last logged, so each is logged once
	prev    map[string][]byte // tokens last read, by "namespace/name"
	// target-tokens Secrets' data last read, by "namespace/secret"
	prevTargets map[string]map[string][]byte
	lastDDI     map[string]string
}

func (w *credentialWatch) rebuild(ctx context.Context) error {
	var list otav1.DeviceEnrollmentList
	if err := w.cache.List(ctx, &list); err != nil {
		return fmt.Errorf("list DeviceEnrollments: %w", err)
	}
	tokens := make([][]byte, len(list.Items))
	read := map[string][]byte{}
	for i := range list.Items {
		e := &list.Items[i]
		if e.Spec.Suspend {
			continue
		}
		tokens[i] = w.token(ctx, e)
		read[e.Namespace+"/"+e.Name] = tokens[i]
	}
	w.prev = read
	m, problems := CompileCredentials(list.Items, tokens)
	w.set.ReplaceWithProblems(m, problems)
	w.last = logNew(w.o.Log, w.last, problems, "DeviceEnrollment enrolls nothing")
	if w.o.DDITargets != nil {
		targets := w.targetSecrets(ctx, list.Items)
		dm, dproblems := CompileDDITokens(list.Items, tokens, targets)
		w.o.DDITargets.Replace(dm)
		w.lastDDI = logNew(w.o.Log, w.lastDDI, dproblems, "DeviceEnrollment has unusable DDI target tokens")
	}
	return nil
}

// logNew logs each problem not logged last time and returns the problems
// as logged.
func logNew(log logr.Logger, last map[string]string, problems map[string]error, msg string) map[string]string {
	now := map[string]string{}
	for k, err := range problems {
		now[k] = err.Error()
		if last[k] != now[k] {
			log.Info(msg, "deviceEnrollment", k, "reason", now[k])
		}
	}
	return now
}

// targetSecrets reads the target-tokens Secret of each DeviceEnrollment
// with spec.ddi (suspended ones too: suspension stops registrations, not
// registered devices). A deleted Secret revokes its tokens at once; a
// failed read keeps the data last read.
func (w *credentialWatch) targetSecrets(ctx context.Context, es []otav1.DeviceEnrollment) []map[string][]byte {
	out := make([]map[string][]byte, len(es))
	read := map[string]map[string][]byte{}
	for i := range es {
		e := &es[i]
		if e.Spec.DDI == nil || e.Spec.DDI.TargetTokensSecretRef == nil {
			continue
		}
		key := client.ObjectKey{Namespace: e.Namespace, Name: e.Spec.DDI.TargetTokensSecretRef.Name}
		if data, ok := read[key.String()]; ok { // two objects naming one Secret
			out[i] = data
			continue
		}
		gctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
		var s corev1.Secret
		err := w.secrets.Get(gctx, key, &s)
		cancel()
		switch {
		case apierrors.IsNotFound(err):
			out[i] = nil
		case err != nil:
			w.o.Log.Error(err, "read DDI target-tokens Secret; keeping the tokens last read", "secret", key.String())
			out[i] = w.prevTargets[key.String()]
		default:
			out[i] = s.Data
		}
		if out[i] != nil {
			read[key.String()] = out[i]
		}
	}
	w.prevTargets = read
	return out
}

// token reads the DeviceEnrollment's token, or nil. A deleted Secret
// revokes its token at once; a failed read keeps the token last read, so an
// API server hiccup does not stop enrollments.
func (w *credentialWatch) token(ctx context.Context, e *otav1.DeviceEnrollment) []byte {
	gctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	var s corev1.Secret
	key := client.ObjectKey{Namespace: e.Namespace, Name: e.Spec.TokenSecretRef.Name}
	if err := w.secrets.Get(gctx, key, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		w.o.Log.Error(err, "read enrollment token Secret; keeping the last token read", "secret", key.String())
		return w.prev[e.Namespace+"/"+e.Name]
	}
	return s.Data[e.TokenKey()]
}
