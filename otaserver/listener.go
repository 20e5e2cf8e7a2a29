package otaserver

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// The metrics endpoint checks its callers with the API server (TokenReview
// for who, SubjectAccessReview for GET /metrics), as controller-runtime's
// filters.WithAuthenticationAndAuthorization does for the manager.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// ReloadingTLSConfig is the device API's TLS configuration: it serves the
// certificate and key in certFile and keyFile, and whatever replaces them,
// without a restart. cert-manager renews device certificates (every 60 days
// with config/certmanager) and kubelet rewrites the mounted Secret by
// swapping a symlink; the watcher sees both that and a plain rewrite
// (fsnotify, and a re-read every 10 s in case an event is missed). A pair
// that does not parse, or a certificate written before its key, is ignored
// and the last good pair keeps being served.
//
// Run the returned watcher (Start) for as long as the server serves.
func ReloadingTLSConfig(certFile, keyFile string) (*tls.Config, *certwatcher.CertWatcher, error) {
	w, err := certwatcher.New(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("device TLS certificate: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: w.GetCertificate}, w, nil
}

// HTTPLimits bound what one connection may cost the device API's
// http.Server: a client that is slow to send its headers or body, or that
// keeps a connection idle, is disconnected, and at most MaxConnections are
// served at once.
type HTTPLimits struct {
	// ReadHeaderTimeout closes connections whose request headers take
	// longer (slow-header clients); it also bounds how long a fresh
	// connection may stay silent.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included
	// (slow-body clients).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing an answer; blob downloads extend it
	// (Config.BlobWriteTimeout).
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle for longer.
	IdleTimeout time.Duration
	// MaxConnections caps open connections; further ones wait in the
	// kernel's accept queue until one closes. 0 means no cap.
	MaxConnections int
}

// DefaultHTTPLimits are the limits cmd/otaserver uses unless told
// otherwise.
func DefaultHTTPLimits() HTTPLimits {
	return HTTPLimits{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxConnections:    10_000,
	}
}

// NewHTTPServer returns the device API's http.Server with l applied (all
// but MaxConnections, which applies to the listener: Listen).
func NewHTTPServer(addr string, h http.Handler, l HTTPLimits) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// ConnLimiter is a listener that serves at most max connections at once:
// Accept waits while max are open. A waiting client sits in the kernel's
// accept queue, so a flood of idle connections delays well-behaved
// devices by at most ReadHeaderTimeout (when the idle ones are closed)
// instead of exhausting memory or file descriptors.
type ConnLimiter struct {
	net.Listener
	sem    chan struct{}
	active atomic.Int64
	peak   atomic.Int64
	done   chan struct{}
	once   sync.Once
}

// LimitListener wraps ln; max <= 0 returns a limiter without a cap.
func LimitListener(ln net.Listener, max int) *ConnLimiter {
	l := &ConnLimiter{Listener: ln, done: make(chan struct{})}
	if max > 0 {
		l.sem = make(chan struct{}, max)
	}
	return l
}

// Accept waits for a free slot, then for a connection.
func (l *ConnLimiter) Accept() (net.Conn, error) {
	if l.sem != nil {
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		if l.sem != nil {
			<-l.sem
		}
		return nil, err
	}
	n := l.active.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	return &limitedConn{Conn: c, l: l}, nil
}

// Close stops accepting.
func (l *ConnLimiter) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Active is the number of open connections; Peak the most seen at once.
func (l *ConnLimiter) Active() int64 { return l.active.Load() }

// Peak is the most connections that were open at once.
func (l *ConnLimiter) Peak() int64 { return l.peak.Load() }

type limitedConn struct {
	net.Conn
	l    *ConnLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.active.Add(-1)
		if c.l.sem != nil {
			<-c.l.sem
		}
	})
	return err
}
