package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const (
	monitoringDir = "components/monitoring"
	dashboardFile = monitoringDir + "/dashboards/otaflow.json"
)

// monitoringOverlays compose the component with a layout, as a user would:
// split has a metrics Service per process, single one for both.
var monitoringOverlays = []string{"testdata/monitoring", "testdata/monitoring-single"}

// TestMonitoringComponentRenders: the component renders with the layouts;
// its ServiceMonitors reach the metrics ports of both processes and name
// the jobs the alerts select; the dashboard ConfigMap carries the file and
// the label Grafana's sidecar looks for; no layout includes the component
// (its kinds need the Prometheus Operator's CRDs).
func TestMonitoringComponentRenders(t *testing.T) {
	for _, dir := range monitoringOverlays {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			rule := find(objs, "PrometheusRule", "otaflow-alerts")
			if rule == nil || rule.GetNamespace() != ns {
				t.Fatalf("no PrometheusRule otaflow-alerts in %s", ns)
			}
			jobs := map[string]string{} // container port name → job
			for _, sm := range []string{"otaflow-manager", "otaflow-otaserver"} {
				u := find(objs, "ServiceMonitor", sm)
				if u == nil || u.GetNamespace() != ns {
					t.Fatalf("no ServiceMonitor %s in %s", sm, ns)
				}
				sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
				eps, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
				if len(eps) != 1 {
					t.Fatalf("ServiceMonitor %s has %d endpoints", sm, len(eps))
				}
				ep := eps[0].(map[string]any)
				job := ""
				for _, r := range ep["relabelings"].([]any) {
					if r := r.(map[string]any); r["targetLabel"] == "job" {
						job, _ = r["replacement"].(string)
					}
				}
				if job != sm {
					t.Errorf("ServiceMonitor %s sets job %q, want %q (the alerts select it)", sm, job, sm)
				}
				if ep["scheme"] != "https" || ep["bearerTokenFile"] == nil {
					t.Errorf("ServiceMonitor %s does not scrape over HTTPS with a token: %v", sm, ep)
				}
				targets := 0
				for _, svc := range all[corev1.Service](t, objs, "Service") {
					if !labels.SelectorFromSet(sel).Matches(labels.Set(svc.Labels)) {
						continue
					}
					for _, p := range svc.Spec.Ports {
						if p.Name != ep["port"] {
							continue
						}
						targets++
						port := podPort(t, objs, svc, p.TargetPort.StrVal)
						if port == "" {
							t.Errorf("Service %s port %s reaches no container port %q", svc.Name, p.Name, p.TargetPort.StrVal)
						}
						jobs[port] = job
					}
				}
				if targets != 1 {
					t.Errorf("ServiceMonitor %s selects %d Service ports named %v, want 1", sm, targets, ep["port"])
				}
			}
			// The OTA server's metrics port is scraped as otaflow-otaserver,
			// the manager's as otaflow-manager.
			if jobs["ota-metrics"] != "otaflow-otaserver" || jobs["metrics"] != "otaflow-manager" {
				t.Errorf("scrape jobs by container port: %v", jobs)
			}

			cm := find(objs, "ConfigMap", "otaflow-grafana-dashboard")
			if cm == nil || cm.GetNamespace() != ns || cm.GetLabels()["grafana_dashboard"] != "1" {
				t.Fatalf("no dashboard ConfigMap labelled grafana_dashboard=1 in %s: %v", ns, cm)
			}
			want, err := os.ReadFile(dashboardFile)
			if err != nil {
				t.Fatal(err)
			}
			if got, _, _ := unstructured.NestedString(cm.Object, "data", "otaflow.json"); got != string(want) {
				t.Error("the dashboard ConfigMap does not hold dashboards/otaflow.json")
			}
		})
	}
	for _, ov := range overlays {
		for _, o := range render(t, ov.dir) {
			if strings.HasPrefix(o.GetAPIVersion(), "monitoring.coreos.com/") {
				t.Errorf("%s renders %s %s: the monitoring component must stay opt-in", ov.dir, o.GetKind(), o.GetName())
			}
		}
	}
}

// podPort is the name of the container port a Service's named target port
// reaches in the Deployments it selects ("" when none).
func podPort(t *testing.T, objs []*unstructured.Unstructured, svc *corev1.Service, name string) string {
	t.Helper()
	for _, d := range all[appsv1.Deployment](t, objs, "Deployment") {
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if portNumber(&c, name) != 0 {
				return name
			}
		}
	}
	return ""
}

// ruleGroups are the rendered PrometheusRule's groups.
func ruleGroups(t *testing.T) []any {
	t.Helper()
	rule := find(render(t, monitoringOverlays[0]), "PrometheusRule", "otaflow-alerts")
	if rule == nil {
		t.Fatal("no PrometheusRule otaflow-alerts")
	}
	groups, ok, err := unstructured.NestedSlice(rule.Object, "spec", "groups")
	if err != nil || !ok || len(groups) == 0 {
		t.Fatalf("PrometheusRule without groups: %v", err)
	}
	return groups
}

type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func alerts(t *testing.T, groups []any) []alertRule {
	t.Helper()
	var out []alertRule
	for _, g := range groups {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			var a alertRule
			b, _ := json.Marshal(r)
			if err := json.Unmarshal(b, &a); err != nil {
				t.Fatal(err)
			}
			if a.Alert == "" {
				t.Fatalf("a rule that is not an alert: %s", b)
			}
			out = append(out, a)
		}
	}
	return out
}

// withAlert returns a deep copy of groups with alert name's rule changed
// by edit.
func withAlert(t *testing.T, groups []any, name string, edit func(rule map[string]any)) []any {
	t.Helper()
	b, _ := json.Marshal(groups)
	var out []any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	for _, g := range out {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			if r := r.(map[string]any); r["alert"] == name {
				edit(r)
			}
		}
	}
	return out
}

// writeRules writes groups as the rule file the unit tests name.
func writeRules(t *testing.T, dir string, groups []any) {
	t.Helper()
	b, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "otaflow-rules.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// unitTests are the promtool test files by name, as they are and as
// generic YAML.
func unitTests(t *testing.T) (map[string][]byte, map[string]map[string]any) {
	t.Helper()
	files, err := filepath.Glob(monitoringDir + "/tests/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no promtool unit tests in %s/tests: %v", monitoringDir, err)
	}
	raw, docs := map[string][]byte{}, map[string]map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		raw[filepath.Base(f)], docs[filepath.Base(f)] = b, doc
	}
	return raw, docs
}

// alertCases says, for each alert, whether the unit tests expect it to
// fire somewhere and to stay quiet somewhere.
func alertCases(tests map[string]map[string]any) (fires, quiet map[string]bool) {
	fires, quiet = map[string]bool{}, map[string]bool{}
	for _, doc := range tests {
		groups, _ := doc["tests"].([]any)
		for _, g := range groups {
			cases, _ := g.(map[string]any)["alert_rule_test"].([]any)
			for _, c := range cases {
				c := c.(map[string]any)
				name, _ := c["alertname"].(string)
				if exp, _ := c["exp_alerts"].([]any); len(exp) > 0 {
					fires[name] = true
				} else {
					quiet[name] = true
				}
			}
		}
	}
	return fires, quiet
}

// casesOf keeps, of the unit tests, the cases that expect alert name to
// fire (or to stay quiet), with the input series they need. Series values
// must be quoted in the files ('0x10' is a number to YAML).
func casesOf(t *testing.T, tests map[string]map[string]any, name string, firing bool) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for file, doc := range tests {
		var kept []any
		groups, _ := doc["tests"].([]any)
		for _, g := range groups {
			g := g.(map[string]any)
			var cases []any
			original, _ := g["alert_rule_test"].([]any)
			for _, c := range original {
				c := c.(map[string]any)
				if exp, _ := c["exp_alerts"].([]any); c["alertname"] == name && (len(exp) > 0) == firing {
					cases = append(cases, c)
				}
			}
			if len(cases) > 0 {
				copied := map[string]any{}
				for k, v := range g {
					copied[k] = v
				}
				copied["alert_rule_test"] = cases
				delete(copied, "promql_expr_test")
				kept = append(kept, copied)
			}
		}
		if len(kept) > 0 {
			copied := map[string]any{}
			for k, v := range doc {
				copied[k] = v
			}
			copied["tests"] = kept
			b, err := yaml.Marshal(copied)
			if err != nil {
				t.Fatal(err)
			}
			out[file] = b
		}
	}
	return out
}

// runUnitTests writes groups and tests into a fresh directory and runs
// promtool test rules on them.
func runUnitTests(t *testing.T, groups []any, tests map[string][]byte) (string, error) {
	t.Helper()
	dir := t.TempDir()
	writeRules(t, dir, groups)
	var files []string
	for name, b := range tests {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, name)
	}
	slices.Sort(files)
	return runPromtool(t, dir, append([]string{"test", "rules"}, files...)...)
}

// seriesLabel is one label of a promtool input series.
var seriesLabel = regexp.MustCompile(`(\w+)="(?:[^"\\]|\\.)*"`)

// checkInputSeries: the unit tests' input series are series the binaries
// export, with their label names (plus job and instance, which scrapes
// add), so the alerts are tested against what they will see.
func checkInputSeries(t *testing.T, e exportedMetrics, docs map[string]map[string]any) {
	t.Helper()
	for file, doc := range docs {
		groups, _ := doc["tests"].([]any)
		for _, g := range groups {
			in, _ := g.(map[string]any)["input_series"].([]any)
			for _, s := range in {
				series, _ := s.(map[string]any)["series"].(string)
				name, rest, _ := strings.Cut(series, "{")
				labels, ok := e.series(name)
				if !ok && !prometheusSeries[name] {
					t.Errorf("%s: input series %s: not a metric the binaries export", file, series)
					continue
				}
				for _, m := range seriesLabel.FindAllStringSubmatch(rest, -1) {
					if l := m[1]; !labels[l] && l != "job" && l != "instance" {
						t.Errorf("%s: input series %s: %s has no label %s", file, series, name, l)
					}
				}
			}
		}
	}
}

// TestMonitoringAlertsPromtool: promtool accepts the rendered rules and
// their unit tests pass; every alert has a severity, a summary, and a
// description that says what to do; every alert's expression selects only
// metrics the binaries export, and the unit tests feed it series with
// their labels; every alert has a unit test in which it
// fires and one in which it stays quiet, and both can fail: with the alert
// never firing the tests fail, and with it always firing its quiet cases
// fail.
func TestMonitoringAlertsPromtool(t *testing.T) {
	groups := ruleGroups(t)
	dir := t.TempDir()
	writeRules(t, dir, groups)
	if out, err := runPromtool(t, dir, "check", "rules", "otaflow-rules.yaml"); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests, docs := unitTests(t)
	if out, err := runUnitTests(t, groups, tests); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	rules := alerts(t, groups)
	e := exportedByBinaries(t)
	fires, quiet := alertCases(docs)
	for _, a := range rules {
		if s := a.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
			t.Errorf("%s: severity %q", a.Alert, s)
		}
		if a.Annotations["summary"] == "" || a.Annotations["runbook_url"] == "" {
			t.Errorf("%s: no summary or runbook_url", a.Alert)
		}
		if d := a.Annotations["description"]; !strings.Contains(d, "kubectl") || !strings.Contains(d, "docs/") {
			t.Errorf("%s: the description does not say what to run and where to read (kubectl ..., docs/...): %q", a.Alert, d)
		}
		checkExported(t, e, a.Alert, a.Expr)
		if !fires[a.Alert] || !quiet[a.Alert] {
			t.Errorf("%s: unit tests where it fires: %v, where it stays quiet: %v; want both", a.Alert, fires[a.Alert], quiet[a.Alert])
		}
	}
	for name := range fires {
		if !slices.ContainsFunc(rules, func(a alertRule) bool { return a.Alert == name }) {
			t.Errorf("unit tests of an alert that does not exist: %s", name)
		}
	}
	checkInputSeries(t, e, docs)
	if t.Failed() {
		return
	}
	for _, a := range rules {
		t.Run(a.Alert, func(t *testing.T) {
			never := withAlert(t, groups, a.Alert, func(r map[string]any) { r["expr"] = "vector(1) < 0" })
			if out, err := runUnitTests(t, never, casesOf(t, docs, a.Alert, true)); err == nil {
				t.Errorf("the unit tests pass with %s never firing:\n%s", a.Alert, out)
			}
			always := withAlert(t, groups, a.Alert, func(r map[string]any) { r["expr"] = "vector(1)"; delete(r, "for") })
			if out, err := runUnitTests(t, always, casesOf(t, docs, a.Alert, false)); err == nil {
				t.Errorf("the quiet cases pass with %s always firing:\n%s", a.Alert, out)
			}
		})
	}
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int               `json:"id"`
	Type       string            `json:"type"`
	Title      string            `json:"title"`
	Datasource map[string]string `json:"datasource"`
	GridPos    map[string]int    `json:"gridPos"`
	Targets    []struct {
		RefID      string            `json:"refId"`
		Expr       string            `json:"expr"`
		Datasource map[string]string `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

// TestMonitoringDashboard: the dashboard is valid JSON with a uid; every
// panel queries the dashboard's Prometheus data source; every expression
// (and every variable's query) parses — promtool has no expression check,
// so they become recording rules for `promtool check rules`, Grafana's
// variables replaced — and selects only metrics the binaries export.
// A broken expression and an unknown metric are caught the same way.
func TestMonitoringDashboard(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard uid %q title %q, %d panels", d.UID, d.Title, len(d.Panels))
	}
	type query struct{ what, expr string }
	var queries []query
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos["w"] == 0 || p.GridPos["h"] == 0 {
				t.Errorf("panel %q has no size", p.Title)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			if p.Datasource["uid"] != "${datasource}" {
				t.Errorf("panel %q does not use the datasource variable: %v", p.Title, p.Datasource)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] || tg.Datasource["uid"] != "${datasource}" {
					t.Errorf("panel %q: query %q (refId %q, datasource %v)", p.Title, tg.Expr, tg.RefID, tg.Datasource)
				}
				refs[tg.RefID] = true
				queries = append(queries, query{fmt.Sprintf("panel %q %s", p.Title, tg.RefID), tg.Expr})
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Query
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		s, _ := q.(string)
		sel, ok := strings.CutPrefix(s, "label_values(")
		if !ok {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, s)
			continue
		}
		sel, _, _ = cutTopLevelComma(sel)
		queries = append(queries, query{"variable " + v.Name, sel})
	}

	e := exportedByBinaries(t)
	var exprs []string
	for _, q := range queries {
		checkExported(t, e, q.what, q.expr)
		exprs = append(exprs, withoutGrafanaVariables(q.expr))
	}
	if out, err := checkExpressions(t, exprs); err != nil {
		t.Errorf("promtool refuses a dashboard expression: %v\n%s", err, out)
	}

	// The checks fail when they should.
	if out, err := checkExpressions(t, []string{`sum(rate(otaflow_ota_requests_total[5m])`}); err == nil {
		t.Errorf("promtool accepted an unbalanced expression:\n%s", out)
	}
	if names, _ := metricNames(`rate(otaflow_ota_requets_total[5m])`); len(names) != 1 || e.has(names[0]) {
		t.Errorf("a misspelled metric passes the names check: %v", names)
	}
}

// checkExpressions runs promtool check rules on exprs made recording rules.
func checkExpressions(t *testing.T, exprs []string) (string, error) {
	t.Helper()
	var rules []any
	for i, expr := range exprs {
		rules = append(rules, map[string]any{"record": fmt.Sprintf("otaflow_dashboard:expr_%d", i), "expr": expr})
	}
	dir := t.TempDir()
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dashboard.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return runPromtool(t, dir, "check", "rules", "dashboard.yaml")
}
