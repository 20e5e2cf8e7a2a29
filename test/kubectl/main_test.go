// Package kubectl runs the real /usr/bin/kubectl against the device API
// group (devices.ota.otaflow.io) as a cluster serves it: kube-apiserver with
// the aggregation layer configured (front-proxy CA, proxy client
// certificate), an APIService routed to the OTA server, which
// authenticates and authorizes every request by delegating back to the API
// server. Devices are enrolled and driven through the device protocol.
package kubectl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/harness"
	"github.com/otaflow/otaflow/otaserver/devicetest"
)

var stack *harness.Stack

func TestMain(m *testing.M) {
	os.Exit(harness.RunWithStack(m, "otaflow-kubectl-", harness.StackOptions{Tenants: true, DeviceAPI: true, ReportInterval: time.Second}, &stack))
}

// kubectlPath is the kubectl the tests run (Debian's, as users have it).
const kubectlPath = "/usr/bin/kubectl"

// kubectl runs kubectl against the control plane as its administrator,
// with extra arguments; stderr is returned in the error.
func kubectl(ctx context.Context, args ...string) (string, error) {
	return kubectlAs(ctx, "", args...)
}

// kubectlAs runs kubectl with a bearer token ("" for the administrator's
// client certificate).
func kubectlAs(ctx context.Context, token string, args ...string) (string, error) {
	all := []string{"--kubeconfig", stack.CP.Kubeconfig}
	if token != "" {
		all = append(all, "--token", token)
	}
	cmd := exec.CommandContext(ctx, kubectlPath, append(all, args...)...)
	if token != "" {
		// A kubeconfig with a client certificate would authenticate
		// with it first: use the server and CA only.
		cmd.Args = append([]string{kubectlPath, "--server", stack.CP.Config.Host, "--certificate-authority", caFile(), "--token", token}, args...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// caFile writes the API server's CA for kubectlAs.
func caFile() string {
	p := stack.Opts.Dir + "/apiserver-ca.crt"
	if _, err := os.Stat(p); err != nil {
		_ = os.WriteFile(p, stack.CP.Config.CAData, 0o644)
	}
	return p
}

// deviceType is the sample release's device type.
const deviceType = "sensor-v1"

// enroll creates and enrolls a device of namespace ns's enrollment token.
func enroll(t *testing.T, ctx context.Context, token, id, version string, labels map[string]string) *devicetest.Device {
	t.Helper()
	d, err := devicetest.New(stack.ServerURL, id, deviceType, version, labels)
	if err != nil {
		t.Fatal(err)
	}
	// A new DeviceEnrollment's token reaches the OTA server within moments.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := d.Enroll(ctx, token)
		if err == nil && (r.Status == 200 || r.Status == 201) {
			return d
		}
		if err != nil || r.Status != 401 || time.Now().After(deadline) {
			t.Fatalf("enroll %s: %v %d %s", id, err, r.Status, r.Body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lines are out's non-empty lines.
func lines(out string) []string {
	var ls []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			ls = append(ls, l)
		}
	}
	return ls
}
