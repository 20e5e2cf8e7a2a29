package egress_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/otaflow/otaflow/internal/egress"
)

func mustPolicy(t testing.TB, c egress.Config) *egress.Policy {
	t.Helper()
	p, err := egress.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkURLHost is what a fetch does with a URL's host: the name rules, and
// the address rules for a literal.
func checkURLHost(p *egress.Policy, host string) error {
	_, err := p.CheckHost(host)
	return err
}

func TestDefaultPolicy(t *testing.T) {
	p := egress.Default()
	for _, tc := range []struct {
		host string
		rule egress.Rule // "" = allowed
	}{
		{"169.254.169.254", egress.RuleMetadata},
		{"169.254.170.2", egress.RuleMetadata},
		{"169.254.1.1", egress.RuleLinkLocal},
		{"fe80::1", egress.RuleLinkLocal},
		{"fe80::1%eth0", egress.RuleLinkLocal},
		{"[fe80::1]", egress.RuleLinkLocal},
		{"fd00:ec2::254", egress.RuleMetadata},
		{"100.100.100.200", egress.RuleMetadata},
		{"127.0.0.1", egress.RuleLoopback},
		{"127.8.9.10", egress.RuleLoopback},
		{"::1", egress.RuleLoopback},
		{"[::1]", egress.RuleLoopback},
		{"::ffff:127.0.0.1", egress.RuleLoopback},
		{"[::ffff:127.0.0.1]", egress.RuleLoopback},
		{"::ffff:169.254.169.254", egress.RuleMetadata},
		{"64:ff9b::7f00:1", egress.RuleLoopback},   // NAT64 of 127.0.0.1
		{"2002:a9fe:a9fe::1", egress.RuleMetadata}, // 6to4 of 169.254.169.254
		{"0.0.0.0", egress.RuleUnspecified},
		{"0.1.2.3", egress.RuleUnspecified},
		{"::", egress.RuleUnspecified},
		{"224.0.0.1", egress.RuleMulticast},
		{"ff02::1", egress.RuleMulticast},
		{"255.255.255.255", egress.RuleReserved},
		{"localhost", egress.RuleLoopback},
		{"LocalHost.", egress.RuleLoopback},
		{"api.localhost", egress.RuleLoopback},
		{"metadata.google.internal", egress.RuleMetadata},
		{"Metadata.Google.Internal.", egress.RuleMetadata},
		{"metadata", egress.RuleClusterInternal},
		{"svc-name", egress.RuleClusterInternal},
		{"svc.ns.svc", egress.RuleClusterInternal},
		{"svc.ns.svc.cluster.local", egress.RuleClusterInternal},
		{"svc.ns.svc.cluster.local.", egress.RuleClusterInternal},
		{"10-0-0-1.ns.pod.cluster.local", egress.RuleClusterInternal},
		{"cluster.local", egress.RuleClusterInternal},

		// Allowed by default: public and private addresses and names.
		{"firmware.example.com", ""},
		{"svc.example.com", ""},
		{"notcluster.local.example", ""},
		{"10.1.2.3", ""},
		{"192.168.1.10", ""},
		{"172.16.0.1", ""},
		{"fd12::1", ""},
		{"203.0.113.7", ""},
		{"2001:db8::1", ""},
	} {
		t.Run(tc.host, func(t *testing.T) {
			err := checkURLHost(p, tc.host)
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *egress.ForbiddenError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v, want a ForbiddenError (%s)", err, tc.rule)
			}
			if fe.Rule != tc.rule {
				t.Errorf("rule %q, want %q (%v)", fe.Rule, tc.rule, err)
			}
			if !strings.Contains(err.Error(), tc.host) || !strings.Contains(err.Error(), string(tc.rule)) || !strings.Contains(err.Error(), "--egress-allow") {
				t.Errorf("message %q should name the host, the rule and the allowlist flag", err)
			}
		})
	}
}

func TestAllowlistReadmits(t *testing.T) {
	p := mustPolicy(t, egress.Config{
		Allow:         []string{"127.0.0.0/8", "169.254.169.254", "registry.infra.svc.cluster.local", "*.mirror.svc", "::1", " "},
		ClusterCIDRs:  []string{"10.96.0.0/12"},
		ClusterDomain: "cluster.local",
	})
	for _, host := range []string{
		"127.0.0.1", "127.1.2.3", "::ffff:127.0.0.1", "169.254.169.254", "::1",
		"registry.infra.svc.cluster.local", "REGISTRY.infra.svc.cluster.local.",
		"eu.mirror.svc", "a.b.mirror.svc",
	} {
		if err := checkURLHost(p, host); err != nil {
			t.Errorf("%s refused despite the allowlist: %v", host, err)
		}
	}
	for _, host := range []string{"169.254.169.253", "mirror.svc", "other.infra.svc.cluster.local", "fe80::1", "10.96.0.1"} {
		if err := checkURLHost(p, host); err == nil {
			t.Errorf("%s admitted; only the allowlisted entries should be", host)
		}
	}
	// An allowlisted name admits whatever it resolves to.
	if admitted, err := p.CheckHost("registry.infra.svc.cluster.local"); !admitted || err != nil {
		t.Errorf("CheckHost(allowlisted name) = %v, %v; want admitted", admitted, err)
	}
	if admitted, _ := p.CheckHost("firmware.example.com"); admitted {
		t.Error("a name not on the allowlist is reported admitted")
	}
}

func TestClusterCIDRsAndPrivateRanges(t *testing.T) {
	p := mustPolicy(t, egress.Config{ClusterCIDRs: []string{"10.96.0.0/12", "fd00:10:96::/108"}, ClusterDomain: "corp.k8s"})
	for host, rule := range map[string]egress.Rule{
		"10.96.0.10":            egress.RuleClusterInternal,
		"10.111.255.1":          egress.RuleClusterInternal,
		"::ffff:10.96.0.10":     egress.RuleClusterInternal,
		"fd00:10:96::a":         egress.RuleClusterInternal,
		"db.prod.svc.corp.k8s":  egress.RuleClusterInternal,
		"db.prod.svc":           egress.RuleClusterInternal,
		"10.95.0.1":             "",
		"svc.ns.cluster.local.": "", // another cluster domain: only the configured one is internal
	} {
		err := checkURLHost(p, host)
		var fe *egress.ForbiddenError
		switch {
		case rule == "" && err != nil:
			t.Errorf("%s refused: %v", host, err)
		case rule != "" && (!errors.As(err, &fe) || fe.Rule != rule):
			t.Errorf("%s: error %v, want rule %s", host, err, rule)
		}
	}

	strict := mustPolicy(t, egress.Config{DenyPrivate: true, Allow: []string{"10.20.0.0/16"}})
	for _, host := range []string{"10.1.2.3", "172.31.255.255", "192.168.0.1", "100.64.0.1", "fd12::1", "::ffff:192.168.0.1"} {
		var fe *egress.ForbiddenError
		if err := checkURLHost(strict, host); !errors.As(err, &fe) || fe.Rule != egress.RulePrivate {
			t.Errorf("%s with DenyPrivate: error %v, want rule %s", host, err, egress.RulePrivate)
		}
	}
	if err := checkURLHost(strict, "10.20.1.1"); err != nil {
		t.Errorf("allowlisted private address refused: %v", err)
	}
}

func TestNewRefusesBadEntries(t *testing.T) {
	for _, c := range []egress.Config{
		{Allow: []string{"10.0.0.0/33"}},
		{Allow: []string{"http://mirror.example.com"}},
		{Allow: []string{"*."}},
		{Allow: []string{"mirror..example.com"}},
		{Allow: []string{"a b"}},
		{ClusterCIDRs: []string{"not-a-cidr"}},
		{ClusterCIDRs: []string{"10.0.0.0/40"}},
		{ClusterDomain: "bad domain"},
	} {
		if _, err := egress.New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

// TestEmbeddedIPv4SameVerdict: an IPv4 address written as IPv4-mapped,
// NAT64 or 6to4 IPv6 gets the verdict of the IPv4 address itself.
func TestEmbeddedIPv4SameVerdict(t *testing.T) {
	p := mustPolicy(t, egress.Config{ClusterCIDRs: []string{"10.96.0.0/12"}, Allow: []string{"127.0.0.2/32"}})
	rapid.Check(t, func(t *rapid.T) {
		b := rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "ipv4")
		v4 := netip.AddrFrom4([4]byte(b))
		want := p.CheckAddr(v4) == nil
		forms := map[string]netip.Addr{
			"4in6":  netip.AddrFrom16(v4.As16()),
			"nat64": netip.AddrFrom16([16]byte{0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, b[0], b[1], b[2], b[3]}),
			"6to4":  netip.AddrFrom16([16]byte{0x20, 0x02, b[0], b[1], b[2], b[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}),
		}
		for name, a := range forms {
			if got := p.CheckAddr(a) == nil; got != want {
				t.Fatalf("%s %s admitted=%v, IPv4 %s admitted=%v", name, a, got, v4, want)
			}
		}
	})
}

// TestAllowlistedPrefixAlwaysAdmitted: whatever rule an address would hit,
// an allowlist CIDR containing it wins; an address outside every rule's
// range is admitted without one.
func TestAllowlistedPrefixAlwaysAdmitted(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b := rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "addr")
		a := netip.AddrFrom16([16]byte(b))
		if rapid.Bool().Draw(t, "v4") {
			a = netip.AddrFrom4([4]byte(b[:4]))
		}
		bits := rapid.IntRange(0, a.BitLen()).Draw(t, "bits")
		pfx, err := a.Prefix(bits)
		if err != nil {
			t.Fatal(err)
		}
		p, err := egress.New(egress.Config{Allow: []string{pfx.String()}, ClusterCIDRs: []string{"10.0.0.0/8"}, DenyPrivate: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.CheckAddr(a); err != nil {
			t.Fatalf("%s refused although %s is allowlisted: %v", a, pfx, err)
		}
	})
}

// staticResolver is a DNS table for dial tests.
type staticResolver map[string][]netip.Addr

func (r staticResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if !strings.HasSuffix(host, ".") {
		return nil, fmt.Errorf("lookup of %q: names must be resolved as absolute names", host)
	}
	if a, ok := r[strings.TrimSuffix(host, ".")]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func listen(t *testing.T) (port string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello")
			c.Close()
		}
	}()
	_, port, _ = net.SplitHostPort(l.Addr().String())
	return port
}

func TestDialerChecksResolvedAddresses(t *testing.T) {
	port := listen(t)
	loop := netip.MustParseAddr("127.0.0.1")
	dns := staticResolver{
		"rebind.example.com":   {loop},
		"mapped.example.com":   {netip.MustParseAddr("::ffff:127.0.0.1")},
		"mixed.example.com":    {netip.MustParseAddr("169.254.169.254"), loop},
		"registry.example.com": {loop},
	}
	for _, tc := range []struct {
		name    string
		policy  egress.Config
		host    string
		wantErr egress.Rule // "" = connects
	}{
		{"name resolving to loopback", egress.Config{}, "rebind.example.com", egress.RuleLoopback},
		{"name resolving to mapped loopback", egress.Config{}, "mapped.example.com", egress.RuleLoopback},
		{"literal loopback", egress.Config{}, "127.0.0.1", egress.RuleLoopback},
		{"single-label name never resolved", egress.Config{}, "registry", egress.RuleClusterInternal},
		{"allowlisted name admits its addresses", egress.Config{Allow: []string{"registry.example.com"}}, "registry.example.com", ""},
		{"allowlisted CIDR", egress.Config{Allow: []string{"127.0.0.0/8"}}, "rebind.example.com", ""},
		{"refused addresses skipped, allowed one used", egress.Config{Allow: []string{"127.0.0.1"}}, "mixed.example.com", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &egress.Dialer{Policy: mustPolicy(t, tc.policy), Resolver: dns, Timeout: 5 * time.Second}
			conn, err := d.DialContext(t.Context(), "tcp", net.JoinHostPort(tc.host, port))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer conn.Close()
				b, _ := io.ReadAll(conn)
				if string(b) != "hello" {
					t.Errorf("read %q from the test listener", b)
				}
				return
			}
			if err == nil {
				conn.Close()
				t.Fatal("dial succeeded")
			}
			var fe *egress.ForbiddenError
			if !errors.As(err, &fe) || fe.Rule != tc.wantErr {
				t.Fatalf("error %v, want a ForbiddenError for %s", err, tc.wantErr)
			}
		})
	}
}

func TestDialerTrustedProxyAndErrors(t *testing.T) {
	port := listen(t)
	proxy := net.JoinHostPort("127.0.0.1", port)
	d := &egress.Dialer{Policy: egress.Default(), Resolver: staticResolver{}, Trusted: map[string]bool{proxy: true}}
	conn, err := d.DialContext(t.Context(), "tcp", proxy)
	if err != nil {
		t.Fatalf("dial the configured proxy: %v", err)
	}
	conn.Close()

	// A name that does not resolve is a DNS error, not a refusal.
	_, err = d.DialContext(t.Context(), "tcp", "missing.example.com:80")
	var dnsErr *net.DNSError
	var fe *egress.ForbiddenError
	if !errors.As(err, &dnsErr) || errors.As(err, &fe) {
		t.Errorf("unresolvable name: error %v, want a DNS error", err)
	}
	if _, err := d.DialContext(t.Context(), "tcp", "firmware.example.com:http"); err == nil {
		t.Error("a non-numeric port was dialled")
	}
}
