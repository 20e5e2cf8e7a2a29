// Package egress decides where the manager may connect when it fetches
// firmware images. Whoever can write a FirmwareRelease chooses the URL the
// manager fetches, so without a policy a release could read cloud metadata
// (169.254.169.254), the manager's own loopback endpoints or any Service
// inside the cluster (server-side request forgery).
//
// A Policy refuses, unless an allowlist entry re-admits them:
//
//   - loopback (127.0.0.0/8, ::1, "localhost"), unspecified (0.0.0.0/8, ::),
//     link-local (169.254.0.0/16, fe80::/10), multicast and reserved
//     addresses, and cloud metadata services (addresses and names);
//   - cluster-internal names: single-label names, names under .svc and under
//     the cluster domain (cluster.local by default);
//   - the cluster's Service and Pod CIDRs, which the manager cannot discover
//     and is given as flags;
//   - private ranges (RFC 1918, fc00::/7, 100.64.0.0/10) only when
//     DenyPrivate is set: on-premises mirrors usually live there.
//
// Names are checked as written, and every address is checked again when a
// connection is made (Dialer), so a name that resolves to a refused address,
// a redirect, or a DNS answer that changes between check and use (rebinding)
// is caught too.
package egress

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// DefaultClusterDomain is Kubernetes' default cluster domain.
const DefaultClusterDomain = "cluster.local"

// Rule names why an address or name is refused.
type Rule string

// Rules, as they appear in errors and conditions.
const (
	RuleLoopback        Rule = "loopback"
	RuleUnspecified     Rule = "unspecified address"
	RuleLinkLocal       Rule = "link-local"
	RuleMetadata        Rule = "cloud metadata service"
	RuleMulticast       Rule = "multicast"
	RuleReserved        Rule = "reserved address"
	RuleClusterInternal Rule = "cluster-internal"
	RulePrivate         Rule = "private address"
)

// ForbiddenError reports a connection the policy refuses. It never holds
// credentials: only the host as written and the address it resolved to.
type ForbiddenError struct {
	// Host is the name or address as written in the URL.
	Host string
	// Addr is the address refused; invalid when the name itself was.
	Addr netip.Addr
	Rule Rule
	// Detail adds to the rule, e.g. which CIDR matched.
	Detail string
}

func (e *ForbiddenError) Error() string {
	what := e.Host
	if e.Addr.IsValid() && e.Addr.String() != strings.Trim(e.Host, "[]") {
		what = fmt.Sprintf("%s (resolved to %s)", e.Host, e.Addr)
	}
	rule := string(e.Rule)
	if e.Detail != "" {
		rule += ": " + e.Detail
	}
	return fmt.Sprintf("egress policy refuses %s: %s; an allowlist entry (the manager's --egress-allow) re-admits it", what, rule)
}

// Config is a policy as flags give it.
type Config struct {
	// Allow re-admits addresses and names: IP addresses, CIDRs, host names
	// and "*.example.com" (any name below example.com). A name admits
	// whatever it resolves to.
	Allow []string
	// ClusterCIDRs are the cluster's Service and Pod ranges, refused as
	// cluster-internal.
	ClusterCIDRs []string
	// ClusterDomain is the cluster's DNS domain; default cluster.local.
	ClusterDomain string
	// DenyPrivate refuses RFC 1918, unique-local and shared (CGNAT)
	// addresses too.
	DenyPrivate bool
}

// Policy is an immutable egress policy; safe for concurrent use.
type Policy struct {
	allowPrefixes   []netip.Prefix
	allowHosts      map[string]bool
	allowSuffixes   []string // ".example.com"
	clusterPrefixes []netip.Prefix
	clusterDomain   string
	denyPrivate     bool
}

// Default is the policy with no allowlist and no cluster CIDRs.
func Default() *Policy {
	p, _ := New(Config{})
	return p
}

// New builds a policy, refusing entries it cannot parse.
func New(c Config) (*Policy, error) {
	p := &Policy{allowHosts: map[string]bool{}, denyPrivate: c.DenyPrivate}
	p.clusterDomain = normalizeName(c.ClusterDomain)
	if p.clusterDomain == "" {
		p.clusterDomain = DefaultClusterDomain
	}
	if !validName(p.clusterDomain) {
		return nil, fmt.Errorf("cluster domain %q is not a DNS name", c.ClusterDomain)
	}
	for _, e := range c.Allow {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if pfx, ok, err := parsePrefix(e); ok {
			if err != nil {
				return nil, fmt.Errorf("allow entry %q: %w", e, err)
			}
			p.allowPrefixes = append(p.allowPrefixes, pfx)
			continue
		}
		name := normalizeName(e)
		if rest, ok := strings.CutPrefix(name, "*."); ok {
			if !validName(rest) {
				return nil, fmt.Errorf("allow entry %q: not an address, CIDR, host name or *.domain", e)
			}
			p.allowSuffixes = append(p.allowSuffixes, "."+rest)
			continue
		}
		if !validName(name) {
			return nil, fmt.Errorf("allow entry %q: not an address, CIDR, host name or *.domain", e)
		}
		p.allowHosts[name] = true
	}
	for _, e := range c.ClusterCIDRs {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		pfx, ok, err := parsePrefix(e)
		if !ok || err != nil {
			return nil, fmt.Errorf("cluster CIDR %q: want a CIDR such as 10.96.0.0/12", e)
		}
		p.clusterPrefixes = append(p.clusterPrefixes, pfx)
	}
	return p, nil
}

// parsePrefix parses an address or CIDR; ok is false when s looks like a
// name instead.
func parsePrefix(s string) (netip.Prefix, bool, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, true, err
		}
		return canonicalPrefix(pfx), true, nil
	}
	addr, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Prefix{}, false, nil
	}
	addr = addr.WithZone("").Unmap()
	return netip.PrefixFrom(addr, addr.BitLen()), true, nil
}

// canonicalPrefix masks the host bits and unmaps 4in6 prefixes.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr().WithZone("")
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return netip.PrefixFrom(a, p.Bits()).Masked()
}

// String summarises the policy for logs.
func (p *Policy) String() string {
	allow := make([]string, 0, len(p.allowPrefixes)+len(p.allowHosts)+len(p.allowSuffixes))
	for _, a := range p.allowPrefixes {
		allow = append(allow, a.String())
	}
	for _, h := range slices.Sorted(maps.Keys(p.allowHosts)) {
		allow = append(allow, h)
	}
	for _, s := range p.allowSuffixes {
		allow = append(allow, "*"+s)
	}
	cluster := make([]string, 0, len(p.clusterPrefixes))
	for _, c := range p.clusterPrefixes {
		cluster = append(cluster, c.String())
	}
	return fmt.Sprintf("allow=[%s] clusterCIDRs=[%s] clusterDomain=%s denyPrivate=%t",
		strings.Join(allow, ","), strings.Join(cluster, ","), p.clusterDomain, p.denyPrivate)
}

// CheckHost checks a host as written in a URL (a name or an IP literal, IPv6
// with or without brackets). admitted reports that the allowlist names it,
// in which case whatever it resolves to is admitted too.
func (p *Policy) CheckHost(host string) (admitted bool, err error) {
	if addr, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return false, p.checkAddr(host, addr)
	}
	name := normalizeName(host)
	if name == "" {
		return false, errors.New("empty host")
	}
	if p.allowedName(name) {
		return true, nil
	}
	forbid := func(r Rule, detail string) error {
		return &ForbiddenError{Host: host, Rule: r, Detail: detail}
	}
	switch {
	case name == "localhost" || strings.HasSuffix(name, ".localhost"):
		return false, forbid(RuleLoopback, "localhost name")
	case metadataNames[name]:
		return false, forbid(RuleMetadata, "metadata host name")
	case !strings.Contains(name, "."):
		return false, forbid(RuleClusterInternal, "single-label name, resolved through the cluster's search domains")
	case strings.HasSuffix(name, ".svc"):
		return false, forbid(RuleClusterInternal, "Service name (.svc)")
	case name == p.clusterDomain || strings.HasSuffix(name, "."+p.clusterDomain):
		return false, forbid(RuleClusterInternal, "name under the cluster domain "+p.clusterDomain)
	}
	return false, nil
}

// CheckAddr checks an address a connection is about to be made to.
func (p *Policy) CheckAddr(addr netip.Addr) error {
	return p.checkAddr(addr.String(), addr)
}

func (p *Policy) checkAddr(host string, addr netip.Addr) error {
	addr = addr.WithZone("")
	if p.allowedAddr(addr) {
		return nil
	}
	// An IPv4 address embedded in IPv6 (4in6, NAT64, 6to4) reaches the
	// IPv4 host: it is checked as that address too.
	candidates := []netip.Addr{addr}
	if v4, ok := embeddedIPv4(addr); ok {
		if p.allowedAddr(v4) {
			return nil
		}
		candidates = []netip.Addr{v4, addr}
	}
	for _, a := range candidates {
		if r, detail := p.addrRule(a); r != "" {
			return &ForbiddenError{Host: host, Addr: addr, Rule: r, Detail: detail}
		}
	}
	return nil
}

func (p *Policy) addrRule(a netip.Addr) (Rule, string) {
	for _, m := range metadataAddrs {
		if a == m {
			return RuleMetadata, ""
		}
	}
	switch {
	case a.IsUnspecified() || unspecified4.Contains(a):
		return RuleUnspecified, ""
	case a.IsLoopback():
		return RuleLoopback, ""
	case a.IsLinkLocalUnicast():
		return RuleLinkLocal, ""
	case a.IsMulticast():
		return RuleMulticast, ""
	case reserved4.Contains(a):
		return RuleReserved, ""
	}
	for _, c := range p.clusterPrefixes {
		if c.Contains(a) {
			return RuleClusterInternal, "in cluster CIDR " + c.String()
		}
	}
	if p.denyPrivate {
		for _, c := range privatePrefixes {
			if c.Contains(a) {
				return RulePrivate, "in " + c.String()
			}
		}
	}
	return "", ""
}

func (p *Policy) allowedAddr(a netip.Addr) bool {
	for _, pfx := range p.allowPrefixes {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

func (p *Policy) allowedName(name string) bool {
	if p.allowHosts[name] {
		return true
	}
	for _, s := range p.allowSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

var (
	unspecified4 = netip.MustParsePrefix("0.0.0.0/8")
	reserved4    = netip.MustParsePrefix("240.0.0.0/4") // includes 255.255.255.255
	nat64        = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour    = netip.MustParsePrefix("2002::/16")

	privatePrefixes = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("fc00::/7"),
	}

	// Metadata endpoints outside link-local (169.254.169.254 is refused as
	// link-local anyway, but named as what it is).
	metadataAddrs = []netip.Addr{
		netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack, ...
		netip.MustParseAddr("169.254.170.2"),   // ECS task metadata
		netip.MustParseAddr("fd00:ec2::254"),   // AWS IMDS over IPv6
		netip.MustParseAddr("fd00:ec2::23"),    // AWS time sync / DNS
		netip.MustParseAddr("fd20:ce::254"),    // GCP metadata over IPv6
		netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
		netip.MustParseAddr("168.63.129.16"),   // Azure WireServer
		netip.MustParseAddr("192.0.0.192"),     // Oracle Cloud (legacy)
	}
	metadataNames = map[string]bool{
		"metadata.google.internal":   true,
		"metadata.goog":              true,
		"metadata.azure.internal":    true,
		"instance-data.ec2.internal": true,
	}
)

// embeddedIPv4 returns the IPv4 address an IPv6 address carries to an IPv4
// host: IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	if a.Is4In6() {
		return a.Unmap(), true
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// normalizeName lowercases a host name and drops a trailing root dot.
func normalizeName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// validName accepts DNS names (letters, digits, '-', '_' and dots between
// non-empty labels).
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
