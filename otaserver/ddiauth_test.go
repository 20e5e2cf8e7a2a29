package otaserver_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"pgregory.net/rapid"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/otaserver"
)

// tok makes a valid token (32+ bytes) that says what it is for.
func tok(what string) string { return "tok-" + what + "-" + strings.Repeat("0123456789", 3) }

func ddiEnrollment(ns, name string, mut func(*otav1.DeviceEnrollment)) otav1.DeviceEnrollment {
	e := otav1.DeviceEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: otav1.DeviceEnrollmentSpec{TokenSecretRef: otav1.TokenSecretReference{Name: name + "-token"}}}
	if mut != nil {
		mut(&e)
	}
	return e
}

func withDDI(gateway bool, targets string) func(*otav1.DeviceEnrollment) {
	return func(e *otav1.DeviceEnrollment) {
		e.Spec.DDI = &otav1.DDIEnrollment{DeviceType: "sensor-v1", GatewayToken: gateway, Labels: map[string]string{"via": e.Name}}
		if targets != "" {
			e.Spec.DDI.TargetTokensSecretRef = &otav1.LocalSecretReference{Name: targets}
		}
	}
}

// ddiFixture: the tenants "fleet" and "other", with every kind of
// DeviceEnrollment the authenticator must tell apart.
type ddiFixture struct {
	auth otaserver.DDIAuthenticator
	now  time.Time
}

func newDDIFixture(t testing.TB) ddiFixture {
	t.Helper()
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	type obj struct {
		e       otav1.DeviceEnrollment
		token   string
		targets map[string]string
	}
	objs := []obj{
		{ddiEnrollment("fleet", "factory", withDDI(false, "factory-ddi")), tok("factory"), map[string]string{"dev-a": tok("dev-a"), "dev-b": tok("dev-b")}},
		{ddiEnrollment("fleet", "gw", withDDI(true, "")), tok("gw"), nil},
		{ddiEnrollment("fleet", "serials", func(e *otav1.DeviceEnrollment) {
			withDDI(true, "")(e)
			e.Spec.AllowedDeviceIDs = []string{"sn-1"}
		}), tok("serials"), nil},
		{ddiEnrollment("fleet", "old", func(e *otav1.DeviceEnrollment) {
			withDDI(true, "old-ddi")(e)
			e.Spec.ExpiresAt = ptr.To(metav1.NewTime(now.Add(-time.Hour)))
		}), tok("old"), map[string]string{"dev-o": tok("dev-o")}},
		{ddiEnrollment("fleet", "paused", func(e *otav1.DeviceEnrollment) {
			withDDI(true, "paused-ddi")(e)
			e.Spec.Suspend = true
		}), tok("paused"), map[string]string{"dev-p": tok("dev-p")}},
		{ddiEnrollment("fleet", "native", nil), tok("native"), nil},
		{ddiEnrollment("other", "factory", withDDI(true, "factory-ddi")), tok("other"), map[string]string{"dev-x": tok("dev-x")}},
	}
	es := make([]otav1.DeviceEnrollment, len(objs))
	tokens := make([][]byte, len(objs))
	secrets := make([]map[string][]byte, len(objs))
	for i, o := range objs {
		es[i] = o.e
		if !o.e.Spec.Suspend { // as the watch: a suspended object's token is not read
			tokens[i] = []byte(o.token)
		}
		if o.targets != nil {
			secrets[i] = map[string][]byte{}
			for k, v := range o.targets {
				secrets[i][k] = []byte(v)
			}
		}
	}
	m, problems := otaserver.CompileCredentials(es, tokens)
	if len(problems) != 1 || problems["fleet/paused"] == nil {
		t.Fatalf("credential problems %v, want only fleet/paused (suspended)", problems)
	}
	creds := otaserver.NewCredentialSet()
	creds.ReplaceWithProblems(m, problems)
	tm, tproblems := otaserver.CompileDDITokens(es, tokens, secrets)
	if len(tproblems) != 0 {
		t.Fatalf("target token problems: %v", tproblems)
	}
	targets := otaserver.NewDDITokens()
	targets.Replace(tm)
	if targets.Len() != 5 {
		t.Fatalf("%d target tokens, want 5", targets.Len())
	}
	return ddiFixture{auth: otaserver.DDIAuthenticator{Creds: creds, Targets: targets}, now: now}
}

// TestAuthenticateDDI: every scheme, spelling and refusal, with the
// status each maps to and who the request authenticated as.
func TestAuthenticateDDI(t *testing.T) {
	f := newDDIFixture(t)
	cases := []struct {
		name, header, tenant, cid string
		want                      error // nil, an Err* value, or errRefused
		status                    int
		enrollment                string // "namespace/name" authenticated through
		gateway                   bool
		refusal                   string // part of the 403 reason
	}{
		{name: "target token", header: "TargetToken " + tok("dev-a"), tenant: "fleet", cid: "dev-a", status: 200, enrollment: "fleet/factory"},
		{name: "scheme lower case", header: "targettoken " + tok("dev-a"), tenant: "fleet", cid: "dev-a", status: 200, enrollment: "fleet/factory"},
		{name: "scheme upper case, extra blanks", header: "  TARGETTOKEN   " + tok("dev-b") + " \t", tenant: "fleet", cid: "dev-b", status: 200, enrollment: "fleet/factory"},
		{name: "gateway token", header: "GatewayToken " + tok("gw"), tenant: "fleet", cid: "new-1", status: 200, enrollment: "fleet/gw", gateway: true},
		{name: "gateway scheme mixed case", header: "gAtEwAyToKeN " + tok("gw"), tenant: "fleet", cid: "new-2", status: 200, enrollment: "fleet/gw", gateway: true},
		{name: "gateway token on the allowlist", header: "GatewayToken " + tok("serials"), tenant: "fleet", cid: "sn-1", status: 200, enrollment: "fleet/serials", gateway: true},

		{name: "no header", header: "", tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDINoCredentials, status: 401},
		{name: "blank header", header: "  ", tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDINoCredentials, status: 401},
		{name: "scheme only", header: "TargetToken", tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDINoCredentials, status: 401},
		{name: "scheme and space only", header: "TargetToken   ", tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDINoCredentials, status: 401},
		{name: "bearer scheme", header: "Bearer " + tok("dev-a"), tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDINoCredentials, status: 401},
		{name: "scheme with Kelvin sign", header: "TargetTo\u212aen " + tok("dev-a"), tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDINoCredentials, status: 401},
		{name: "token with inner space", header: "TargetToken " + tok("dev-a") + " x", tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDINoCredentials, status: 401},
		{name: "token with control byte", header: "TargetToken " + tok("dev-a") + "\x01", tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDINoCredentials, status: 401},
		{name: "token too long", header: "TargetToken " + strings.Repeat("t", 513), tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDINoCredentials, status: 401},

		{name: "unknown target token", header: "TargetToken " + tok("nobody"), tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDIUnknownToken, status: 401},
		{name: "unknown gateway token", header: "GatewayToken " + tok("nobody"), tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDIUnknownToken, status: 401},
		{name: "target token as gateway token", header: "GatewayToken " + tok("dev-a"), tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDIUnknownToken, status: 401},
		{name: "enrollment token as target token", header: "TargetToken " + tok("gw"), tenant: "fleet", cid: "new-1", want: otaserver.ErrDDIUnknownToken, status: 401},
		{name: "gateway token of a suspended enrollment", header: "GatewayToken " + tok("paused"), tenant: "fleet", cid: "new-1", want: otaserver.ErrDDIUnknownToken, status: 401},

		{name: "token of device A on the path of B", header: "TargetToken " + tok("dev-a"), tenant: "fleet", cid: "dev-b", want: otaserver.ErrDDIWrongTarget, status: 401},
		{name: "target token of another tenant", header: "TargetToken " + tok("dev-x"), tenant: "fleet", cid: "dev-x", want: otaserver.ErrDDIWrongTarget, status: 401},
		{name: "target token on another tenant's path", header: "TargetToken " + tok("dev-a"), tenant: "other", cid: "dev-a", want: otaserver.ErrDDIWrongTarget, status: 401},
		{name: "gateway token of another tenant", header: "GatewayToken " + tok("other"), tenant: "fleet", cid: "new-1", want: otaserver.ErrDDIWrongTarget, status: 401},
		{name: "gateway token on a device with a target token", header: "GatewayToken " + tok("gw"), tenant: "fleet", cid: "dev-a", want: otaserver.ErrDDIWrongTarget, status: 401},
		{name: "cluster-wide tenant: target token", header: "TargetToken " + tok("dev-a"), tenant: "", cid: "dev-a", want: otaserver.ErrDDIWrongTarget, status: 401},
		{name: "cluster-wide tenant: gateway token", header: "GatewayToken " + tok("gw"), tenant: "", cid: "new-1", want: otaserver.ErrDDIWrongTarget, status: 401},

		{name: "gateway token with gatewayToken false", header: "GatewayToken " + tok("factory"), tenant: "fleet", cid: "new-1", want: otaserver.ErrDDIGatewayDisabled, status: 401},
		{name: "gateway token without spec.ddi", header: "GatewayToken " + tok("native"), tenant: "fleet", cid: "new-1", want: otaserver.ErrDDIGatewayDisabled, status: 401},

		{name: "controllerId not a device ID", header: "TargetToken " + tok("dev-a"), tenant: "fleet", cid: "dev a", want: otaserver.ErrDDIBadControllerID, status: 404},
		{name: "controllerId too long", header: "GatewayToken " + tok("gw"), tenant: "fleet", cid: strings.Repeat("d", 129), want: otaserver.ErrDDIBadControllerID, status: 404},

		{name: "target token of an expired enrollment", header: "TargetToken " + tok("dev-o"), tenant: "fleet", cid: "dev-o", want: errRefused, status: 403, enrollment: "fleet/old", refusal: "expired"},
		{name: "gateway token of an expired enrollment", header: "GatewayToken " + tok("old"), tenant: "fleet", cid: "new-1", want: errRefused, status: 403, enrollment: "fleet/old", gateway: true, refusal: "expired"},
		{name: "target token of a suspended enrollment", header: "TargetToken " + tok("dev-p"), tenant: "fleet", cid: "dev-p", want: errRefused, status: 403, enrollment: "fleet/paused", refusal: "suspended"},
		{name: "gateway token off the allowlist", header: "GatewayToken " + tok("serials"), tenant: "fleet", cid: "sn-2", want: errRefused, status: 403, enrollment: "fleet/serials", gateway: true, refusal: "allowlist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := f.auth.AuthenticateDDI(tc.header, tc.tenant, tc.cid, f.now)
			if got := otaserver.DDIStatus(err); got != tc.status {
				t.Fatalf("status %d (%v), want %d", got, err, tc.status)
			}
			var refused *otaserver.DDIRefusedError
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.want == errRefused:
				if !errors.As(err, &refused) || !strings.Contains(refused.Reason, tc.refusal) || refused.Enrollment != tc.enrollment {
					t.Fatalf("error %v, want a refusal of %s saying %q", err, tc.enrollment, tc.refusal)
				}
			case tc.want != nil:
				if !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
				if tc.status == 401 && !errors.Is(err, otaserver.ErrDDIUnauthenticated) {
					t.Fatalf("error %v does not wrap ErrDDIUnauthenticated", err)
				}
				if a != (otaserver.DDIAuth{}) {
					t.Fatalf("unauthenticated, yet %+v", a)
				}
				return
			}
			if got := a.Namespace + "/" + a.Enrollment; got != tc.enrollment || a.Gateway != tc.gateway {
				t.Fatalf("authenticated as %s gateway=%v, want %s gateway=%v", got, a.Gateway, tc.enrollment, tc.gateway)
			}
			if err == nil && (a.Credential == nil || a.Credential.DDI == nil || a.Credential.DDI.DeviceType != "sensor-v1" || a.Credential.Key() != tc.enrollment) {
				t.Fatalf("credential %+v, want %s's with its spec.ddi", a.Credential, tc.enrollment)
			}
			for _, secret := range []string{tok("dev-a"), tok("dev-o"), tok("dev-p"), tok("old"), tok("serials")} {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Fatalf("the error shows a token: %v", err)
				}
			}
		})
	}
}

var errRefused = errors.New("refused (403)")

// TestDDITokenHashDomain: target tokens are hashed apart from the native
// bearer tokens (plain SHA-256), so neither map can answer the other's
// token.
func TestDDITokenHashDomain(t *testing.T) {
	tk := []byte(tok("dev-a"))
	got := otaserver.DDITokenHash(tk)
	if got == sha256.Sum256(tk) {
		t.Fatal("DDITokenHash is the native token hash")
	}
	if want := sha256.Sum256(append([]byte("otaflow-ddi/v1\x00"), tk...)); got != want {
		t.Fatalf("DDITokenHash = %x, want SHA-256(\"otaflow-ddi/v1\\x00\" || token) = %x", got, want)
	}
}

// TestCompileCredentialsDDI: spec.ddi is carried into the credential, as
// a copy.
func TestCompileCredentialsDDI(t *testing.T) {
	es := []otav1.DeviceEnrollment{
		ddiEnrollment("fleet", "ddi", withDDI(true, "t")),
		ddiEnrollment("fleet", "plain", nil),
	}
	m, problems := otaserver.CompileCredentials(es, [][]byte{[]byte(tok("ddi")), []byte(tok("plain"))})
	if len(problems) != 0 || len(m) != 2 {
		t.Fatalf("credentials %v, problems %v", m, problems)
	}
	es[0].Spec.DDI.Labels["via"] = "changed later"
	d := m[sha256.Sum256([]byte(tok("ddi")))].DDI
	if d == nil || d.DeviceType != "sensor-v1" || !d.Gateway || d.Labels["via"] != "ddi" {
		t.Fatalf("DDI settings %+v", d)
	}
	if p := m[sha256.Sum256([]byte(tok("plain")))]; p.DDI != nil {
		t.Fatalf("an object without spec.ddi has DDI settings %+v", p.DDI)
	}
}

// TestCompileDDITokensRefusals: each unusable entry is dropped and named
// by its key, never its token; usable entries of the same Secret stay.
func TestCompileDDITokensRefusals(t *testing.T) {
	es := []otav1.DeviceEnrollment{
		ddiEnrollment("fleet", "a", withDDI(false, "a-ddi")),
		ddiEnrollment("fleet", "b", withDDI(false, "b-ddi")),
		ddiEnrollment("other", "c", withDDI(false, "c-ddi")),
		ddiEnrollment("fleet", "plain", nil), // its Secret data is ignored
		ddiEnrollment("fleet", "paused", func(e *otav1.DeviceEnrollment) { withDDI(false, "p-ddi")(e); e.Spec.Suspend = true }), // kept
	}
	tokens := [][]byte{[]byte(tok("a")), []byte(tok("b")), []byte(tok("c")), []byte(tok("plain")), nil}
	secrets := []map[string][]byte{
		{
			"ok-a":      []byte(tok("ok-a")),
			"short":     []byte("short-token"),
			"newline":   []byte(tok("newline") + "\n"),
			"bad key":   []byte(tok("bad-key")),
			"shared-a":  []byte(tok("shared")),
			"reuses-b":  []byte(tok("b")),
			"twice":     []byte(tok("twice-a")),
			"cross-ns":  []byte(tok("cross-fleet")),
			"too-long":  []byte(strings.Repeat("x", 513)),
			"utf8-é":    []byte(tok("utf8")),
			"non-ascii": []byte(tok("é")),
		},
		{"ok-b": []byte(tok("ok-b")), "shared-b": []byte(tok("shared")), "twice": []byte(tok("twice-b"))},
		{"cross-ns": []byte(tok("cross-other")), "ok-c": []byte(tok("ok-c"))},
		{"ignored": []byte(tok("ignored"))},
		{"dev-p": []byte(tok("dev-p"))},
	}
	m, problems := otaserver.CompileDDITokens(es, tokens, secrets)
	var got []string
	for _, tg := range m {
		got = append(got, tg.Namespace+"/"+tg.Enrollment+"/"+tg.DeviceID)
	}
	slices.Sort(got)
	want := []string{"fleet/a/cross-ns", "fleet/a/ok-a", "fleet/b/ok-b", "fleet/paused/dev-p", "other/c/cross-ns", "other/c/ok-c"}
	if !slices.Equal(got, want) {
		t.Fatalf("targets %v, want %v", got, want)
	}
	if tg := m[otaserver.DDITokenHash([]byte(tok("ok-a")))]; tg.DeviceID != "ok-a" {
		t.Fatalf("ok-a's token maps to %+v", tg)
	}
	if len(problems) != 2 || problems["fleet/a"] == nil || problems["fleet/b"] == nil {
		t.Fatalf("problems %v, want fleet/a and fleet/b", problems)
	}
	pa, pb := problems["fleet/a"].Error(), problems["fleet/b"].Error()
	if !strings.HasPrefix(pa, "9 unusable target tokens: ") || !strings.HasSuffix(pa, "(and 6 more)") {
		t.Fatalf("fleet/a: %q, want 9 problems, 3 shown", pa)
	}
	for _, k := range []string{`key "bad key": not a device ID`, `key "newline": the token holds`} {
		if !strings.Contains(pa, k) {
			t.Errorf("fleet/a: %q does not say %s", pa, k)
		}
	}
	for _, k := range []string{`key "shared-b": the same token is in another entry`, `key "twice": another DeviceEnrollment of the namespace`} {
		if !strings.Contains(pb, k) {
			t.Errorf("fleet/b: %q does not say %s", pb, k)
		}
	}
	for _, p := range []string{pa, pb} {
		if strings.Contains(p, "0123456789") || strings.Contains(p, "short-token") {
			t.Fatalf("a problem shows a token: %q", p)
		}
	}
}

// TestCompileDDITokensModel: for any Secrets, a token authenticates
// exactly the entries that are valid, not an enrollment token, whose token
// is in no other entry and whose controllerId no other DeviceEnrollment of
// the namespace lists; and every object that lost an entry has a problem.
func TestCompileDDITokensModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 5).Draw(t, "objects")
		es := make([]otav1.DeviceEnrollment, n)
		tokens := make([][]byte, n)
		secrets := make([]map[string][]byte, n)
		pool := []string{tok("t1"), tok("t2"), tok("t3"), tok("t4"), tok("t5"), "short", tok("e0"), tok("nl") + "\n"}
		for i := range n {
			ns := rapid.SampledFrom([]string{"a", "b"}).Draw(t, "ns")
			name := fmt.Sprintf("e%d", i)
			var mut func(*otav1.DeviceEnrollment)
			if rapid.Bool().Draw(t, "ddi") {
				mut = withDDI(false, name+"-ddi")
			}
			es[i] = ddiEnrollment(ns, name, mut)
			tokens[i] = []byte(tok(name))
			if rapid.Bool().Draw(t, "secret") {
				secrets[i] = map[string][]byte{}
				for range rapid.IntRange(0, 4).Draw(t, "entries") {
					k := rapid.SampledFrom([]string{"d1", "d2", "d3", "bad key"}).Draw(t, "key")
					secrets[i][k] = []byte(rapid.SampledFrom(pool).Draw(t, "token"))
				}
			}
		}
		m, problems := otaserver.CompileDDITokens(es, tokens, secrets)

		// The model: entries that count, then uniqueness.
		type entry struct{ ns, obj, key, tok string }
		var valid []entry
		lost := map[string]bool{}
		tokCount, devObjs := map[string]int{}, map[string]map[string]bool{}
		for i, e := range es {
			if e.Spec.DDI == nil || secrets[i] == nil {
				continue
			}
			for k, v := range secrets[i] {
				bootstrap := slices.ContainsFunc(tokens, func(b []byte) bool { return string(b) == string(v) })
				if k == "bad key" || len(v) < otav1.MinEnrollmentTokenLength || !otav1.HeaderSafeToken(v) || bootstrap {
					lost[e.Namespace+"/"+e.Name] = true
					continue
				}
				valid = append(valid, entry{e.Namespace, e.Name, k, string(v)})
				tokCount[string(v)]++
				dk := e.Namespace + "/" + k
				if devObjs[dk] == nil {
					devObjs[dk] = map[string]bool{}
				}
				devObjs[dk][e.Name] = true
			}
		}
		want := 0
		for _, en := range valid {
			tg, ok := m[otaserver.DDITokenHash([]byte(en.tok))]
			if tokCount[en.tok] == 1 && len(devObjs[en.ns+"/"+en.key]) == 1 {
				want++
				if !ok || tg != (otaserver.DDITarget{Namespace: en.ns, Enrollment: en.obj, DeviceID: en.key}) {
					t.Fatalf("%s/%s key %s: target %+v (%v), want it", en.ns, en.obj, en.key, tg, ok)
				}
			} else {
				lost[en.ns+"/"+en.obj] = true
				if ok {
					t.Fatalf("%s/%s key %s: ambiguous, yet maps to %+v", en.ns, en.obj, en.key, tg)
				}
			}
		}
		if len(m) != want {
			t.Fatalf("%d targets, want %d", len(m), want)
		}
		for obj := range lost {
			if problems[obj] == nil {
				t.Fatalf("%s lost entries without a problem reported", obj)
			}
		}
		if len(problems) != len(lost) {
			t.Fatalf("problems %v for objects that lost nothing (lost: %v)", problems, lost)
		}
	})
}

// FuzzAuthenticateDDI: any header and path get a 401, 403 or 404, or
// authenticate only with a token the fixture issued, never panicking.
func FuzzAuthenticateDDI(f *testing.F) {
	for _, s := range []struct{ h, cid string }{
		{"TargetToken " + tok("dev-a"), "dev-a"}, {"GatewayToken " + tok("gw"), "new-1"}, {"", ""},
		{"targettoken\t" + tok("dev-a"), "dev-a"}, {"GatewayToken  " + tok("serials"), "sn-2"},
		{"TargetToken " + tok("dev-o"), "dev-o"}, {"Bearer x", "dev-a"}, {"TargetToken \xff", "\x00"},
	} {
		f.Add(s.h, s.cid)
	}
	fx := newDDIFixture(f)
	issued := []string{tok("dev-a"), tok("dev-b"), tok("gw"), tok("serials"), tok("dev-o"), tok("old"), tok("dev-p")}
	f.Fuzz(func(t *testing.T, header, cid string) {
		a, err := fx.auth.AuthenticateDDI(header, "fleet", cid, fx.now)
		switch st := otaserver.DDIStatus(err); st {
		case http.StatusOK, http.StatusForbidden:
			if !slices.ContainsFunc(issued, func(s string) bool { return strings.HasSuffix(strings.TrimRight(header, " \t"), " "+s) }) {
				t.Fatalf("%q authenticated (%d) without an issued token", header, st)
			}
			if a.Namespace != "fleet" {
				t.Fatalf("%q authenticated into %q", header, a.Namespace)
			}
		case http.StatusUnauthorized, http.StatusNotFound:
		default:
			t.Fatalf("status %d for %v", st, err)
		}
	})
}
