package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/mender"
)

// P11m's devices: native agents and mender-client devices of the
// fixture's namespace, in one store.
const (
	p11mNativePrefix = "p11m-n-"
	p11mMenderPrefix = "p11m-m-"
	p11mEnrollment   = "bench-mender"
	p11mTenantToken  = "bench-mender-tenant-token-0123456789abcdef"
)

// p11mTokenKey is the HMAC key of the serve child's token keys; the load
// generator signs the devices' tokens with it, as the front would have at
// their authentication.
var p11mTokenKey = detBytes("p11m-token-key", 32)

// runP11m compares Mender deployments/next polls with native update
// checks (P11m), as P11 does for DDI: one server child with the Mender
// front over the native API (as cmd/otaserver --mender), one SQLite store
// holding both fleets, the same fixture rollout selecting both, runs
// alternating.
func runP11m(ctx context.Context, c config, res *Results) error {
	if c.P11Devices <= 0 || c.Runs <= 0 {
		return fmt.Errorf("--p11-devices=%d, --runs=%d: want positive", c.P11Devices, c.Runs)
	}
	n := c.P11Devices
	dir := filepath.Join(c.WorkDir, "p11m")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fx, err := makeFixture(dir, 1<<20, 1)
	if err != nil {
		return fmt.Errorf("fixture: %w", err)
	}
	fx.Mender = true // a Mender artifact: deliverable to both fleets
	if err := writeJSON(filepath.Join(dir, "fixture.json"), fx); err != nil {
		return err
	}
	db := filepath.Join(dir, "devices.db")
	took, err := seedDevices(ctx, db, 2*n, func(i int, now time.Time) devicestore.Device {
		if i%2 == 0 {
			return benchDevice(p11mNativePrefix, i/2, now)
		}
		return menderDevice(p11mMenderPrefix, i/2, now)
	})
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	for _, prefix := range []string{p11mNativePrefix, p11mMenderPrefix} {
		if err := touchAllSQLite(ctx, db, prefix, n); err != nil {
			return fmt.Errorf("touch: %w", err)
		}
	}
	res.raw("P11m seeding %d native + %d Mender devices into one SQLite store (bulk load): %s; then every device touched once", n, n, took.Round(100*time.Millisecond))

	// Each device's token, signed as the front signs them at
	// authentication: made before the runs, so signing costs the load
	// generator nothing during them.
	keys := mender.NewTokenKeys()
	if err := keys.Replace(map[string][]byte{"bench": p11mTokenKey}); err != nil {
		return err
	}
	tokens := make([]string, n)
	now := time.Now()
	for i := range tokens {
		if tokens[i], err = keys.IssueDevice(deviceID(p11mMenderPrefix, i), benchNS, now, 24*time.Hour); err != nil {
			return err
		}
	}

	ch, err := startChild(dir, "otaserver-mender", "--mode=ota", "--fixture="+filepath.Join(dir, "fixture.json"), "--db="+db,
		fmt.Sprintf("--container-memory-mib=%d", p6ContainerMiB), "--mender")
	if err != nil {
		return err
	}
	defer ch.Stop()
	client := newClient(c.Workers)

	nativeOffers, nativeTook, err := p11Pass(ctx, client, c.Workers, n, func(i int) (*http.Request, error) {
		return nativeCheck(ch.Addr, deviceToken(p11mNativePrefix, i))
	}, nativeOffer)
	if err != nil {
		return fmt.Errorf("P11m native pass: %w", err)
	}
	menderOffers, menderTook, err := p11Pass(ctx, client, c.Workers, n, func(i int) (*http.Request, error) {
		return menderNext(ch.Addr, tokens[i])
	}, menderOffer)
	if err != nil {
		return fmt.Errorf("P11m Mender pass: %w", err)
	}
	res.raw("P11m first pass, one check-in per device: native %d offers of %d in %s; Mender %d deployments of %d in %s",
		nativeOffers, n, nativeTook.Round(100*time.Millisecond), menderOffers, n, menderTook.Round(100*time.Millisecond))
	if nativeOffers == 0 || menderOffers == 0 {
		return fmt.Errorf("P11m: offers native %d, Mender %d: want both fleets in the rollout's open wave", nativeOffers, menderOffers)
	}

	counters := map[string]func() (time.Duration, error){"server child": childCPU(ch), "load generator": selfCPU}
	cpu := map[string][]float64{}
	run := func(name string, build func(int, *mrand.Rand) (*http.Request, error)) func(int) (loadResult, error) {
		return func(i int) (loadResult, error) {
			r, per, err := loadWithCPU(ctx, client, loadSpec{Workers: c.Workers, Warmup: c.Warmup, Duration: c.Duration, Build: build}, counters)
			if err != nil {
				return r, fmt.Errorf("P11m run %d %s: %w", i+1, name, err)
			}
			for k, v := range per {
				cpu[name+" "+k] = append(cpu[name+" "+k], v)
			}
			res.raw("P11m run %d %s: %.0f req/s p50 %s p99 %s (statuses %v); CPU per request: %s", i+1, name, r.RPS, r.P50, r.P99, r.Statuses,
				fmtCPU(per, "server child", "load generator"))
			return r, checkAnswers(fmt.Sprintf("P11m run %d %s", i+1, name), r)
		}
	}
	menderBuild := func(_ int, rng *mrand.Rand) (*http.Request, error) { return menderNext(ch.Addr, tokens[rng.IntN(n)]) }
	natives, menders, ratios, err := bracketed(ctx, c.Runs,
		run("native", checkinBuilder(p11mNativePrefix, n, ch.Addr)),
		run("Mender", menderBuild))
	if err != nil {
		return err
	}
	res.raw("P11m ratios Mender / mean of the native runs around it: %s", fmtRatios(ratios))
	ratio := median(ratios)
	nRPS, mRPS := median(rpsOf(natives)), median(rpsOf(menders))
	res.add(Row{ID: "P11m", Measure: fmt.Sprintf("Mender deployments/next polls/s vs native update checks/s, one OTA server with the Mender front, %d Mender + %d native devices in one SQLite store, %d keep-alive clients (closed loop)", n, n, c.Workers),
		Figure:   fmt.Sprintf("Mender: %.0f req/s, p50 %.2f ms, p99 %.2f ms", mRPS, median(p50Of(menders)), median(p99Of(menders))),
		Baseline: fmt.Sprintf("native: %.0f req/s, p50 %.2f ms, p99 %.2f ms", nRPS, median(p50Of(natives)), median(p99Of(natives))),
		Ratio:    fmt.Sprintf("%.2f", ratio), Target: "ratio ≥ 0.8", Result: passIf(ratio >= 0.8),
		Command: fmt.Sprintf("go run ./hack/bench --only=p11m --p11-devices=%d --clients=%d --runs=%d --duration=%s", n, c.Workers, c.Runs, c.Duration),
		Notes: fmt.Sprintf("ratio %.2f: Mender %.0f polls/s vs native %.0f update checks/s (medians); ", ratio, mRPS, nRPS) +
			fmt.Sprintf("CPU per request (median of runs, from /proc): server child Mender %.0f µs, native %.0f µs; load generator Mender %.0f µs, native %.0f µs; ",
				median(cpu["Mender server child"]), median(cpu["native server child"]), median(cpu["Mender load generator"]), median(cpu["native load generator"])) +
			"one server child (P1's handler and http.Server limits, the Mender front over it as cmd/otaserver --mender wires it, with a DeviceEnrollment credential compiled by CompileCredentials) and one store for both fleets; " +
			"native: GET /v1/update with the device's bearer token; Mender: POST /api/devices/v2/deployments/device/deployments/next with the device's JWT and mender-client's v2 body, every answer 200 or 204 or the run fails; " +
			"a JWT (HS256) is verified once per token and key set and then remembered (at most 131,072; the first pass fills it, so the runs measure polls with remembered tokens, as a fleet polling with hour-long tokens mostly does; a token verified afresh costs about 9 µs more); " +
			"the same situation on both sides: the fixture rollout (a Mender artifact, so mender-client may be sent it) selects half of each fleet, wave 0 = 1% open, so ~0.5% of devices get an offer (native a signed assignment, Mender a deployment with a signed download link), the rest 204; " +
			fmt.Sprintf("before the runs one check-in per device on each side, unmeasured (native %d offers, Mender %d); ", nativeOffers, menderOffers) +
			fmt.Sprintf("runs alternate native, Mender, native, … (%d Mender run(s), one more native run), ratio = median over Mender runs of its req/s over the mean of the two native runs around it", c.Runs)})
	return nil
}

// menderDevice is Mender device i as the front registers one: the
// tenant's namespace and DeviceEnrollment, its key's DER (any bytes do
// here: polls never read it), a random token hash, and the version its
// polls report (benchDevice's type, labels and version).
func menderDevice(prefix string, i int, now time.Time) devicestore.Device {
	d := ddiDevice(prefix, i, now)
	d.KEM, d.PublicKey = mender.KEMPrefix+"ed25519", devicePubs[i%keyPool]
	d.Enrollment = p11mEnrollment
	return d
}

// menderFront is the serve child's Mender front (--mender): a
// DeviceEnrollment with spec.mender compiled as the OTA server's
// credential watch does, and the bench token key.
func menderFront(srv *otaserver.Server, native http.Handler) (http.Handler, error) {
	es := []otav1.DeviceEnrollment{{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: p11mEnrollment},
		Spec:       otav1.DeviceEnrollmentSpec{Mender: &otav1.MenderEnrollment{DeviceType: deviceType, AutoAccept: true}},
	}}
	creds, problems := otaserver.CompileCredentials(es, [][]byte{[]byte(p11mTenantToken)})
	if len(problems) > 0 {
		return nil, fmt.Errorf("Mender credentials: %v", problems)
	}
	cs := otaserver.NewCredentialSet()
	cs.Replace(creds)
	keys := mender.NewTokenKeys()
	if err := keys.Replace(map[string][]byte{"bench": p11mTokenKey}); err != nil {
		return nil, err
	}
	return mender.New(mender.Config{Core: srv, Auth: mender.Credentials(cs), Keys: keys, ExternalURL: p11ExternalURL, Fallback: native})
}

// menderNextBody is what mender-client 3.4 POSTs to v2 next, for a device
// running the bench's running version.
var menderNextBody = func() []byte {
	b, err := json.Marshal(mender.NextV2{DeviceProvides: mender.Provides{"artifact_name": runningVer, "device_type": deviceType}, UpdateControlMap: true})
	if err != nil {
		panic(err)
	}
	return b
}()

func menderNext(addr, token string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/api/devices/v2/deployments/device/deployments/next", bytes.NewReader(menderNextBody))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	return req, nil
}

// menderOffer says whether a Mender answer is a deployment (200 with an
// id and a download link) or nothing (204); anything else fails.
func menderOffer(resp *http.Response, body []byte) (bool, error) {
	switch resp.StatusCode {
	case http.StatusNoContent:
		return false, nil
	case http.StatusOK:
		var d mender.NextDeployment
		if err := json.Unmarshal(body, &d); err != nil || d.ID == "" || d.Artifact.Source.URI == "" {
			return false, fmt.Errorf("deployment answer %s: %v", body, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("status %d: %s", resp.StatusCode, body)
}
