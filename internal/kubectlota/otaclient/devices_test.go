package otaclient

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"

	devv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	"github.com/otaflow/otaflow/internal/kubectlota/deviceapitest"
)

// fleet is n devices in ns; every third has a record in rollout r1 (state
// failed for every sixth, else succeeded).
func fleet(ns string, n int) []devv1.Device {
	devs := make([]devv1.Device, n)
	for i := range devs {
		d := devv1.Device{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("dev-%04d", i), Namespace: ns}}
		d.Status.Version = "1.0.0"
		if i%3 == 0 {
			state := "succeeded"
			if i%6 == 0 {
				state = "failed"
			}
			d.Status.Rollout, d.Status.State = "r1", state
			d.Status.Rollouts = []devv1.DeviceRollout{{Rollout: "r1", State: state}}
		}
		devs[i] = d
	}
	return devs
}

func devicesClient(t *testing.T, srv *deviceapitest.Server) *Devices {
	t.Helper()
	c, err := NewDevices(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDevicesEachPages(t *testing.T) {
	devs := append(fleet("a", 1201), fleet("b", 7)...)
	srv := deviceapitest.New(devs, nil)
	defer srv.Close()
	c := devicesClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	seen := map[string]bool{}
	err := c.Each(ctx, "a", nil, func(d *devv1.Device) {
		if seen[d.Name] {
			t.Errorf("device %s counted twice", d.Name)
		}
		if d.Namespace != "a" {
			t.Errorf("device %s of namespace %s", d.Name, d.Namespace)
		}
		seen[d.Name] = true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1201 {
		t.Errorf("%d devices, want 1201", len(seen))
	}
	reqs := srv.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 pages of at most 500", len(reqs))
	}
	for i, r := range reqs {
		q := r.URL.Query()
		if q.Get("limit") != "500" {
			t.Errorf("page %d: limit %q", i, q.Get("limit"))
		}
		if (i == 0) != (q.Get("continue") == "") {
			t.Errorf("page %d: continue %q", i, q.Get("continue"))
		}
		if r.URL.Path != "/apis/devices.ota.otaflow.io/v1alpha1/namespaces/a/devices" {
			t.Errorf("page %d: path %s", i, r.URL.Path)
		}
	}
}

func TestDevicesEachFieldSelector(t *testing.T) {
	srv := deviceapitest.New(fleet("a", 60), nil)
	defer srv.Close()
	c := devicesClient(t, srv)
	n := 0
	sel := fields.AndSelectors(fields.OneTermEqualSelector(devv1.FieldRollout, "r1"), fields.OneTermEqualSelector(devv1.FieldState, "failed"))
	if err := c.Each(context.Background(), "a", sel, func(*devv1.Device) { n++ }); err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Errorf("%d failed devices of r1, want 10", n)
	}
	if got := srv.Requests()[0].URL.Query().Get("fieldSelector"); got != "status.rollout=r1,status.state=failed" {
		t.Errorf("fieldSelector %q", got)
	}
}

func TestDevicesEachExpired(t *testing.T) {
	srv := deviceapitest.New(fleet("a", 1200), nil)
	defer srv.Close()
	srv.ExpireAfter(2)
	n := 0
	err := devicesClient(t, srv).Each(context.Background(), "a", nil, func(*devv1.Device) { n++ })
	if err == nil || !strings.Contains(err.Error(), "the list expired after 2 pages") {
		t.Fatalf("error %v, want the expired list named", err)
	}
}

func TestDevicesEachNotServed(t *testing.T) {
	// The fake answers 404 outside the device API's paths, as a cluster
	// without the device API does.
	srv := deviceapitest.New(nil, nil)
	defer srv.Close()
	c, err := NewDevices(&rest.Config{Host: srv.URL + "/not-an-apiserver"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Each(context.Background(), "a", nil, func(*devv1.Device) {})
	if err == nil || !strings.Contains(err.Error(), "is not served here") {
		t.Fatalf("error %v, want the device API named as missing", err)
	}
}

func TestDecisionServerDown(t *testing.T) {
	srv := deviceapitest.New(nil, nil)
	c := devicesClient(t, srv)
	srv.Close()
	if _, err := c.Decision(context.Background(), "a", "x"); err == nil || !strings.Contains(err.Error(), "get decision of device a/x") {
		t.Fatalf("error %v, want the failed request named", err)
	}
}

func TestDecision(t *testing.T) {
	wave := 1
	srv := deviceapitest.New(nil, map[string]devv1.DeviceDecision{
		"a/dev-1": {ObjectMeta: metav1.ObjectMeta{Name: "dev-1", Namespace: "a"}, Action: "Offer", Rollout: "r1",
			Rollouts: []devv1.RolloutVerdict{{Rollout: "r1", Verdict: devv1.VerdictActs, Wave: &wave, InFleet: true}}},
	})
	defer srv.Close()
	c := devicesClient(t, srv)
	d, err := c.Decision(context.Background(), "a", "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Action != "Offer" || d.Rollout != "r1" || len(d.Rollouts) != 1 || *d.Rollouts[0].Wave != 1 {
		t.Errorf("decision %+v", d)
	}
	if p := srv.Requests()[0].URL.Path; p != "/apis/devices.ota.otaflow.io/v1alpha1/namespaces/a/devices/dev-1/decision" {
		t.Errorf("path %s", p)
	}
	_, err = c.Decision(context.Background(), "a", "dev-2")
	if err == nil || !strings.Contains(err.Error(), "device dev-2 not found in namespace a") {
		t.Errorf("error %v, want not found", err)
	}
}
