package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer connects only where its Policy allows. Use its DialContext as an
// http.Transport's.
type Dialer struct {
	Policy *Policy
	// Resolver resolves names; default net.DefaultResolver. Names are
	// looked up as absolute names (with a trailing dot), so a resolver's
	// search domains never turn "svc.namespace" into a cluster Service.
	Resolver Resolver
	// Timeout bounds one connection attempt; KeepAlive as net.Dialer's.
	Timeout, KeepAlive time.Duration
	// Trusted are host:port addresses dialled without a check: the HTTP
	// proxies the operator configured, which resolve and connect on the
	// manager's behalf (the target is then checked by name only).
	Trusted map[string]bool
}

// DialContext resolves addr's host, drops addresses the policy refuses and
// connects to the first remaining address that answers. The address
// actually connected to is checked once more by the net.Dialer's Control
// hook, so nothing reaches a socket unchecked. When every address is
// refused the error is a *ForbiddenError.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.Trusted[addr] {
		nd := net.Dialer{Timeout: d.Timeout, KeepAlive: d.KeepAlive}
		return nd.DialContext(ctx, network, addr)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dial %s: invalid port %q", addr, portStr)
	}
	policy := d.Policy
	if policy == nil {
		policy = Default()
	}
	admitted, err := policy.CheckHost(host)
	if err != nil {
		return nil, err
	}

	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = d.resolver().LookupNetIP(ctx, ipNetwork(network), rooted(host))
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	var allowed []netip.Addr
	var refused error
	for _, a := range addrs {
		if admitted {
			allowed = append(allowed, a)
			continue
		}
		if err := policy.checkAddr(host, a); err != nil {
			if refused == nil {
				refused = err
			}
			continue
		}
		allowed = append(allowed, a)
	}
	if len(allowed) == 0 {
		if refused != nil {
			return nil, refused
		}
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}

	nd := net.Dialer{
		KeepAlive: d.KeepAlive,
		ControlContext: func(_ context.Context, _, address string, _ syscall.RawConn) error {
			if admitted {
				return nil
			}
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("egress check of %q: %w", address, err)
			}
			return policy.checkAddr(host, ap.Addr())
		},
	}
	// Timeout bounds all attempts together; each address but the last gets
	// an equal share of what is left, as net.Dialer does for fallbacks.
	dctx := ctx
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	var errs []error
	for i, a := range allowed {
		actx, cancel := dctx, context.CancelFunc(func() {})
		if dl, ok := dctx.Deadline(); ok && i < len(allowed)-1 {
			actx, cancel = context.WithTimeout(dctx, time.Until(dl)/time.Duration(len(allowed)-i))
		}
		conn, err := nd.DialContext(actx, network, netip.AddrPortFrom(a, uint16(port)).String())
		cancel()
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if dctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (d *Dialer) resolver() Resolver {
	if d.Resolver != nil {
		return d.Resolver
	}
	return net.DefaultResolver
}

func ipNetwork(network string) string {
	switch network {
	case "tcp4", "udp4":
		return "ip4"
	case "tcp6", "udp6":
		return "ip6"
	}
	return "ip"
}

func rooted(host string) string {
	if strings.HasSuffix(host, ".") {
		return host
	}
	return host + "."
}
