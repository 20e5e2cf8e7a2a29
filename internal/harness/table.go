package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// PrintTable prints resources the way `kubectl get` does, from the
// apiserver's server-side table (the CRDs' printer columns).
func PrintTable(ctx context.Context, w io.Writer, cfg *rest.Config, namespace, resource string) error {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	url := fmt.Sprintf("%s/apis/ota.otaflow.io/v1alpha1/namespaces/%s/%s", strings.TrimSuffix(cfg.Host, "/"), namespace, resource)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("get %s table: %w", resource, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("get %s table: %s: %s", resource, resp.Status, b)
	}
	var t metav1.Table
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return fmt.Errorf("decode %s table: %w", resource, err)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	var keep []int
	var head []string
	for i, c := range t.ColumnDefinitions {
		if c.Priority == 0 {
			keep = append(keep, i)
			head = append(head, strings.ToUpper(c.Name))
		}
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, row := range t.Rows {
		var cells []string
		for _, i := range keep {
			c := row.Cells[i]
			if c == nil {
				c = "<none>" // as kubectl prints an absent value
			}
			cells = append(cells, fmt.Sprint(c))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}
