package config

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/controllers"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/catalog"
	"github.com/otaflow/otaflow/otaserver/reporter"
)

// promtool is the promtool the monitoring tests run: $OTAFLOW_PROMTOOL,
// which make test sets after `make promtool` unpacked it. Never skipped:
// the alerts and the dashboard ship untested otherwise.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := findPromtool()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var findPromtool = sync.OnceValues(func() (string, error) {
	p := os.Getenv("OTAFLOW_PROMTOOL")
	if p == "" {
		return "", fmt.Errorf("OTAFLOW_PROMTOOL is not set: run `make promtool` (Debian's promtool into bin/promtool) and set OTAFLOW_PROMTOOL=$PWD/bin/promtool/promtool, as make test does")
	}
	if !filepath.IsAbs(p) {
		// go test runs in config/; a path relative to the repository root
		// is one level up.
		if _, err := os.Stat(p); err != nil {
			p = filepath.Join("..", p)
		}
	}
	if out, err := exec.Command(p, "--version").CombinedOutput(); err != nil {
		return "", fmt.Errorf("OTAFLOW_PROMTOOL=%s does not run (%v): run `make promtool`\n%s", p, err, out)
	}
	return p, nil
})

// runPromtool runs promtool with args in dir and returns its output.
func runPromtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// metricNames returns the metric names an expression (PromQL, or a
// Grafana label_values(selector, label) query) selects: its identifiers
// that are not functions, aggregations, keywords, label names of grouping
// clauses, or inside label matchers, ranges and strings. An expression it
// cannot follow (unbalanced brackets, a selector without a metric name)
// is an error, so nothing it checks goes unchecked. Syntax is promtool's
// to judge.
func metricNames(expr string) ([]string, error) {
	if inner, ok := strings.CutPrefix(strings.TrimSpace(expr), "label_values("); ok {
		sel, _, found := cutTopLevelComma(inner)
		if !found {
			return nil, fmt.Errorf("label_values without a label: %q", expr)
		}
		expr = sel
	}
	toks, err := promqlTokens(expr)
	if err != nil {
		return nil, err
	}
	depth := map[string]int{}
	for _, tk := range toks {
		if tk.kind != 'p' {
			continue
		}
		switch tk.text {
		case "(", "{", "[":
			depth[tk.text]++
		case ")":
			depth["("]--
		case "}":
			depth["{"]--
		case "]":
			depth["["]--
		}
		for b, n := range depth {
			if n < 0 {
				return nil, fmt.Errorf("unbalanced %s in %q", b, expr)
			}
		}
	}
	for b, n := range depth {
		if n != 0 {
			return nil, fmt.Errorf("unbalanced %s in %q", b, expr)
		}
	}
	grouping := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	keywords := map[string]bool{"bool": true, "and": true, "or": true, "unless": true, "offset": true, "atan2": true, "inf": true, "nan": true}
	var names []string
	skipTo := func(i int, open, close string) (int, error) {
		depth := 0
		for j := i; j < len(toks); j++ {
			if toks[j].kind == 'p' {
				switch toks[j].text {
				case open:
					depth++
				case close:
					depth--
					if depth == 0 {
						return j, nil
					}
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %s in %q", open, expr)
	}
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		next := token{}
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		switch {
		case tk.kind == 'p' && tk.text == "{":
			if i == 0 || toks[i-1].kind != 'i' || !slices.Contains(names, toks[i-1].text) {
				return nil, fmt.Errorf("a selector without a metric name in %q", expr)
			}
			j, err := skipTo(i, "{", "}")
			if err != nil {
				return nil, err
			}
			i = j
		case tk.kind == 'p' && tk.text == "[":
			j, err := skipTo(i, "[", "]")
			if err != nil {
				return nil, err
			}
			i = j
		case tk.kind == 'i' && grouping[strings.ToLower(tk.text)]:
			if next.kind == 'p' && next.text == "(" {
				j, err := skipTo(i+1, "(", ")")
				if err != nil {
					return nil, err
				}
				i = j
			}
		case tk.kind == 'i' && keywords[strings.ToLower(tk.text)]:
		case tk.kind == 'i' && next.kind == 'p' && next.text == "(":
			// a function or an aggregation
		case tk.kind == 'i' && next.kind == 'i' && (next.text == "by" || next.text == "without"):
			// an aggregation with its grouping first: sum by (x) (...)
		case tk.kind == 'i':
			names = append(names, tk.text)
		}
	}
	return names, nil
}

type token struct {
	kind byte // 'i' identifier, 's' string, 'n' number or duration, 'p' punctuation
	text string
}

func promqlTokens(s string) ([]token, error) {
	var toks []token
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string in %q", s)
			}
			toks = append(toks, token{'s', s[i : j+1]})
			i = j + 1
		case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]):
			j := i
			for j < len(s) && (isIdent(s[j], false) || s[j] == '.') {
				if (s[j] == 'e' || s[j] == 'E') && j+1 < len(s) && (s[j+1] == '+' || s[j+1] == '-') {
					j++
				}
				j++
			}
			toks = append(toks, token{'n', s[i:j]})
			i = j
		case isIdent(c, true):
			j := i
			for j < len(s) && isIdent(s[j], false) {
				j++
			}
			toks = append(toks, token{'i', s[i:j]})
			i = j
		default:
			toks = append(toks, token{'p', string(c)})
			i++
		}
	}
	return toks, nil
}

// cutTopLevelComma splits s at its first comma outside brackets and strings.
func cutTopLevelComma(s string) (before, after string, found bool) {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '{' || c == '[':
			depth++
		case c == ')' || c == '}' || c == ']':
			depth--
		case c == ',' && depth == 0:
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// grafanaVariable matches Grafana's variables in a panel's expression.
var grafanaVariable = regexp.MustCompile(`\$\{[^}]+\}|\$\w+|\[\[\w+\]\]`)

// withoutGrafanaVariables replaces Grafana's interval variables by a
// duration and every other variable (used in label matchers) by ".*", so
// that promtool can parse the expression.
func withoutGrafanaVariables(expr string) string {
	return grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		switch strings.Trim(v, "${}[]") {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		}
		return ".*"
	})
}

// exportedMetrics are the metric families the two binaries export, by
// name.
type exportedMetrics map[string]*family

// family is an exported metric family: its type where it is known
// ("histogram" and "summary" allow the _bucket, _sum and _count series)
// and its label names. The type of a vector registered elsewhere that
// nothing observed yet is not known (controller-runtime's histograms):
// its series with suffixes are refused until describe learns it.
type family struct {
	kind   string
	labels map[string]bool
}

func (e exportedMetrics) add(name string) *family {
	f := e[name]
	if f == nil {
		f = &family{labels: map[string]bool{}}
		e[name] = f
	}
	return f
}

// series returns the label names of the series name (a family, or a
// histogram's or summary's _bucket, _sum or _count), and whether the
// binaries export it.
func (e exportedMetrics) series(name string) (map[string]bool, bool) {
	if f, ok := e[name]; ok {
		ls := maps.Clone(f.labels)
		if f.kind == "summary" {
			ls["quantile"] = true
		}
		return ls, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && e[base] != nil {
			if kind := e[base].kind; kind == "histogram" || kind == "summary" && suffix != "_bucket" {
				ls := maps.Clone(e[base].labels)
				if suffix == "_bucket" {
					ls["le"] = true
				}
				return ls, true
			}
		}
	}
	return nil, false
}

func (e exportedMetrics) has(name string) bool {
	_, ok := e.series(name)
	return ok
}

// prometheusSeries are the series Prometheus itself adds to every target.
var prometheusSeries = map[string]bool{"up": true}

// recordingRegistry remembers the collectors registered with it, whose Go
// types tell histograms from gauges before anything was observed.
type recordingRegistry struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recordingRegistry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recordingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// nilCatalog and nilStore let the reporter be built for its metrics alone.
type nilCatalog struct{}

func (nilCatalog) Snapshot() *catalog.Snapshot { return nil }

type nilStore struct{ devicestore.Store }

// A Desc's String is the only way to its name and label names.
var (
	descName   = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`constLabels: \{(.*)\}, variableLabels: \{([^}]*)\}\}$`)
	constLabel = regexp.MustCompile(`(\w+)="`)
)

// describe adds the names of every collector of d (kind unknown), then the
// kinds the registered collectors' types and the gathered families tell.
func (e exportedMetrics) describe(d interface {
	Describe(chan<- *prometheus.Desc)
}, g prometheus.Gatherer, cs []prometheus.Collector) error {
	var unreadable error
	names := func(c interface {
		Describe(chan<- *prometheus.Desc)
	}) []string {
		ch := make(chan *prometheus.Desc)
		go func() { c.Describe(ch); close(ch) }()
		var out []string
		for desc := range ch {
			name, ls := descName.FindStringSubmatch(desc.String()), descLabels.FindStringSubmatch(desc.String())
			if name == nil || ls == nil {
				unreadable = fmt.Errorf("cannot read the name and labels of %s", desc)
				continue
			}
			out = append(out, name[1])
			f := e.add(name[1])
			for _, m := range constLabel.FindAllStringSubmatch(ls[1], -1) {
				f.labels[m[1]] = true
			}
			for l := range strings.SplitSeq(ls[2], ",") {
				if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
					f.labels[l] = true
				}
			}
		}
		return out
	}
	names(d)
	for _, c := range cs {
		kind := ""
		switch c.(type) {
		case *prometheus.HistogramVec:
			kind = "histogram"
		case *prometheus.SummaryVec:
			kind = "summary"
		case *prometheus.CounterVec:
			kind = "counter"
		case *prometheus.GaugeVec:
			kind = "gauge"
		}
		if kind != "" {
			for _, n := range names(c) {
				e[n].kind = kind
			}
		}
	}
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	for _, mf := range mfs {
		e.add(mf.GetName()).kind = strings.ToLower(mf.GetType().String())
	}
	return unreadable
}

// exportedByBinaries builds the metrics as the binaries do, on fresh
// registries: the OTA server's (the device API, signing keys, the reporter,
// the Go and process collectors, as cmd/otaserver registers them) and the
// manager's (controller-runtime's registry, which its packages fill when
// they are linked in, plus the rollout collector).
func exportedByBinaries(t *testing.T) exportedMetrics {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	e := exportedMetrics{}
	ota := &recordingRegistry{Registry: prometheus.NewRegistry()}
	ota.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	otaserver.NewMetrics(ota)
	otaserver.NewSigningKeys(ota)
	_, err := reporter.New(reporter.Config{Catalog: nilCatalog{}, Store: nilStore{}, Registerer: ota, Log: logr.Discard()})
	must(err)
	must(e.describe(ota, ota, ota.collectors))

	scheme := runtime.NewScheme()
	must(otav1.AddToScheme(scheme))
	mgr := &recordingRegistry{Registry: prometheus.NewRegistry()}
	mgr.MustRegister(controllers.NewRolloutCollector(fake.NewClientBuilder().WithScheme(scheme).Build()))
	must(e.describe(mgr, mgr, mgr.collectors))
	crt, ok := ctrlmetrics.Registry.(interface {
		prometheus.Gatherer
		Describe(chan<- *prometheus.Desc)
	})
	if !ok {
		t.Fatalf("controller-runtime's registry is a %T, which cannot describe its collectors", ctrlmetrics.Registry)
	}
	must(e.describe(crt, crt, nil))
	return e
}

// checkExported fails the test for every metric name of expr the binaries
// do not export; what names where expr was found.
func checkExported(t *testing.T, e exportedMetrics, what, expr string) {
	t.Helper()
	names, err := metricNames(expr)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if len(names) == 0 && !strings.Contains(expr, "time()") {
		t.Errorf("%s selects no metric: %q", what, expr)
	}
	for _, n := range names {
		if !e.has(n) && !prometheusSeries[n] {
			t.Errorf("%s: metric %s is exported by neither binary (%q)", what, n, expr)
		}
	}
}

// TestPromQLMetricNames: the names check finds every selected metric and
// nothing else, refuses what it cannot follow, and the exported set holds
// the series the alerts rely on and not a made-up one.
func TestPromQLMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (route, le) (rate(otaflow_ota_request_duration_seconds_bucket{code=~"5..", route!="x,y"}[5m]))`, []string{"otaflow_ota_request_duration_seconds_bucket"}},
		{`a / on (namespace) group_left (version) b offset 1h > bool 1.5e-3`, []string{"a", "b"}},
		{`sum(rate(x[1h30m])) without (instance) or vector(0) and on () absent(y{job="j"})`, []string{"x", "y"}},
		{`time() - max(last_success) > 300`, []string{"last_success"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m:1m])))`, []string{"h_bucket"}},
		{`label_values(otaflow_rollout_phase{namespace=~"$namespace"}, rollout)`, []string{"otaflow_rollout_phase"}},
		{`count_values("version", x) # comment naming y`, []string{"x"}},
	} {
		got, err := metricNames(tc.expr)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
	for _, bad := range []string{`{__name__="x"}`, `sum(rate(x[5m])`, `x{a="b"`, `label_values(x)`, `"open`} {
		if names, err := metricNames(bad); err == nil {
			t.Errorf("metricNames(%q) = %v, want an error", bad, names)
		}
	}
	if got := withoutGrafanaVariables(`rate(x{ns=~"$namespace",r=~"${rollout}"}[$__rate_interval])`); got != `rate(x{ns=~".*",r=~".*"}[5m])` {
		t.Errorf("variables replaced: %s", got)
	}

	e := exportedByBinaries(t)
	for _, tc := range []struct{ name, kind, labels string }{
		{"otaflow_ota_requests_total", "counter", "code,route"},
		{"otaflow_ota_request_duration_seconds", "histogram", "code,route"},
		{"otaflow_ota_request_duration_seconds_bucket", "", "code,le,route"},
		{"otaflow_ota_reporter_errors_total", "counter", "stage"},
		{"otaflow_ota_reporter_last_success_timestamp_seconds", "gauge", ""},
		{"otaflow_rollout_wave_failure_ratio", "", "namespace,rollout,wave"},
		{"controller_runtime_reconcile_errors_total", "", "controller"},
	} {
		ls, ok := e.series(tc.name)
		got := strings.Join(slices.Sorted(maps.Keys(ls)), ",")
		if !ok || got != tc.labels || tc.kind != "" && e[tc.name].kind != tc.kind {
			t.Errorf("exported %s: %v, labels %q, want a %s with labels %q", tc.name, ok, got, tc.kind, tc.labels)
		}
	}
	for _, name := range []string{"otaflow_ota_request_duration_seconds_bucket", "otaflow_ota_store_seconds_count", "go_gc_duration_seconds_sum"} {
		if !e.has(name) {
			t.Errorf("%s not exported", name)
		}
	}
	for _, name := range []string{"otaflow_ota_requests_total_bucket", "otaflow_rollout_phase_count", "otaflow_made_up_total"} {
		if e.has(name) {
			t.Errorf("%s taken for an exported series", name)
		}
	}
}
