package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/devicestore"
	"github.com/otaflow/otaflow/otaserver"
	"github.com/otaflow/otaflow/otaserver/ddi"
)

// P11's devices: native agents and hawkBit DDI controllers of the
// fixture's namespace (the DDI tenant), in one store.
const (
	p11NativePrefix = "p11-n-"
	p11DDIPrefix    = "p11-ddi-"
	// p11Enrollment is the DeviceEnrollment the DDI devices' target
	// tokens belong to.
	p11Enrollment = "bench-ddi"
	// p11EnrollmentToken is its enrollment token (unused by the measure:
	// devices present their target tokens).
	p11EnrollmentToken = "bench-ddi-enrollment-token-0123456789abcdef"
	// p11ExternalURL is the hrefs' base, as cmd/otaserver sets it from
	// --public-url.
	p11ExternalURL = "https://ota.bench.invalid"
)

// runP11 compares hawkBit DDI base polls with native update checks (P11):
// one server child with the DDI front over the native API (as
// cmd/otaserver --ddi), one SQLite store holding both fleets, the same
// fixture rollout selecting both, runs alternating.
func runP11(ctx context.Context, c config, res *Results) error {
	if c.P11Devices <= 0 || c.Runs <= 0 {
		return fmt.Errorf("--p11-devices=%d, --runs=%d: want positive", c.P11Devices, c.Runs)
	}
	n := c.P11Devices
	dir := filepath.Join(c.WorkDir, "p11")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fx, err := makeFixture(dir, 1<<20, 1)
	if err != nil {
		return fmt.Errorf("fixture: %w", err)
	}
	fx.DDI = true // a SWUpdate release: deliverable to both fleets
	if err := writeJSON(filepath.Join(dir, "fixture.json"), fx); err != nil {
		return err
	}
	db := filepath.Join(dir, "devices.db")
	// Interleaved: both fleets spread alike over the file and the index.
	took, err := seedDevices(ctx, db, 2*n, func(i int, now time.Time) devicestore.Device {
		if i%2 == 0 {
			return benchDevice(p11NativePrefix, i/2, now)
		}
		return ddiDevice(p11DDIPrefix, i/2, now)
	})
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := touchAllSQLite(ctx, db, p11NativePrefix, n); err != nil {
		return fmt.Errorf("touch: %w", err)
	}
	if err := touchAllSQLite(ctx, db, p11DDIPrefix, n); err != nil {
		return fmt.Errorf("touch: %w", err)
	}
	res.raw("P11 seeding %d native + %d DDI devices into one SQLite store (bulk load): %s; then every device touched once", n, n, took.Round(100*time.Millisecond))

	ch, err := startChild(dir, "otaserver-ddi", "--mode=ota", "--fixture="+filepath.Join(dir, "fixture.json"), "--db="+db,
		fmt.Sprintf("--container-memory-mib=%d", p6ContainerMiB), "--ddi", "--ddi-prefix="+p11DDIPrefix, fmt.Sprintf("--ddi-devices=%d", n))
	if err != nil {
		return err
	}
	defer ch.Stop()
	client := newClient(c.Workers)

	// One check-in per device on each side, unmeasured: every answer is
	// checked and the offers counted (both fleets must be in the same
	// situation), and each offered device has its record afterwards, so
	// the runs see a polling fleet's steady state on both sides.
	nativeOffers, nativeTook, err := p11Pass(ctx, client, c.Workers, n, func(i int) (*http.Request, error) {
		return nativeCheck(ch.Addr, deviceToken(p11NativePrefix, i))
	}, nativeOffer)
	if err != nil {
		return fmt.Errorf("P11 native pass: %w", err)
	}
	ddiOffers, ddiTook, err := p11Pass(ctx, client, c.Workers, n, func(i int) (*http.Request, error) {
		return ddiPoll(ch.Addr, i)
	}, ddiOffer)
	if err != nil {
		return fmt.Errorf("P11 DDI pass: %w", err)
	}
	res.raw("P11 first pass, one check-in per device: native %d offers of %d in %s; DDI %d deploymentBase links of %d in %s",
		nativeOffers, n, nativeTook.Round(100*time.Millisecond), ddiOffers, n, ddiTook.Round(100*time.Millisecond))
	if nativeOffers == 0 || ddiOffers == 0 {
		return fmt.Errorf("P11: offers native %d, DDI %d: want both fleets in the rollout's open wave", nativeOffers, ddiOffers)
	}

	counters := map[string]func() (time.Duration, error){"server child": childCPU(ch), "load generator": selfCPU}
	cpu := map[string][]float64{}
	run := func(name string, build func(int, *mrand.Rand) (*http.Request, error), check func(string, loadResult) error) func(int) (loadResult, error) {
		return func(i int) (loadResult, error) {
			r, per, err := loadWithCPU(ctx, client, loadSpec{Workers: c.Workers, Warmup: c.Warmup, Duration: c.Duration, Build: build}, counters)
			if err != nil {
				return r, fmt.Errorf("P11 run %d %s: %w", i+1, name, err)
			}
			for k, v := range per {
				cpu[name+" "+k] = append(cpu[name+" "+k], v)
			}
			res.raw("P11 run %d %s: %.0f req/s p50 %s p99 %s (statuses %v); CPU per request: %s", i+1, name, r.RPS, r.P50, r.P99, r.Statuses,
				fmtCPU(per, "server child", "load generator"))
			return r, check(fmt.Sprintf("P11 run %d %s", i+1, name), r)
		}
	}
	ddiBuild := func(_ int, rng *mrand.Rand) (*http.Request, error) { return ddiPoll(ch.Addr, rng.IntN(n)) }
	natives, ddis, ratios, err := bracketed(ctx, c.Runs,
		run("native", checkinBuilder(p11NativePrefix, n, ch.Addr), checkAnswers),
		run("DDI", ddiBuild, checkDDIAnswers))
	if err != nil {
		return err
	}
	res.raw("P11 ratios DDI / mean of the native runs around it: %s", fmtRatios(ratios))
	ratio := median(ratios)
	nRPS, dRPS := median(rpsOf(natives)), median(rpsOf(ddis))
	res.add(Row{ID: "P11", Measure: fmt.Sprintf("hawkBit DDI base polls/s vs native update checks/s, one OTA server with the DDI front, %d DDI + %d native devices in one SQLite store, %d keep-alive clients (closed loop)", n, n, c.Workers),
		Figure:   fmt.Sprintf("DDI: %.0f req/s, p50 %.2f ms, p99 %.2f ms", dRPS, median(p50Of(ddis)), median(p99Of(ddis))),
		Baseline: fmt.Sprintf("native: %.0f req/s, p50 %.2f ms, p99 %.2f ms", nRPS, median(p50Of(natives)), median(p99Of(natives))),
		Ratio:    fmt.Sprintf("%.2f", ratio), Target: "ratio ≥ 0.8", Result: passIf(ratio >= 0.8),
		Command: p11Command(c),
		Notes: fmt.Sprintf("ratio %.2f: DDI %.0f base polls/s vs native %.0f update checks/s (medians); ", ratio, dRPS, nRPS) +
			fmt.Sprintf("CPU per request (median of runs, from /proc): server child DDI %.0f µs, native %.0f µs; load generator DDI %.0f µs, native %.0f µs; ",
				median(cpu["DDI server child"]), median(cpu["native server child"]), median(cpu["DDI load generator"]), median(cpu["native load generator"])) +
			"one server child (P1's handler and http.Server limits, the DDI front over it as cmd/otaserver --ddi wires it, with a real otaserver.DDIAuthenticator: target tokens and the DeviceEnrollment credential compiled by CompileDDITokens and CompileCredentials) and one store for both fleets, so both sides see the same process, caches, index size and last-seen batching; " +
			"native: GET /v1/update with the device's bearer token; DDI: GET /bench/controller/v1/{id} with `TargetToken`, every answer 200 or the run fails; " +
			"the same situation on both sides: the fixture rollout (a SWUpdate release, so DDI clients may be sent it) selects half of each fleet, wave 0 = 1% open, so ~0.5% of devices get an offer (native 200 with a signed assignment, DDI a deploymentBase link), the rest nothing (native 204, DDI 200 with no action link; the base also links configData, nothing having been PUT); " +
			fmt.Sprintf("before the runs one check-in per device on each side, unmeasured (native %d offers, DDI %d: each offered device has its record, a polling fleet's steady state); ", nativeOffers, ddiOffers) +
			fmt.Sprintf("runs alternate native, DDI, native, … (%d DDI run(s), one more native run), ratio = median over DDI runs of its req/s over the mean of the two native runs around it", c.Runs)})

	if c.Profile > 0 {
		// Both sides, from the same child: `go tool pprof -diff_base
		// p11-native-cpu.pprof p11-ddi-cpu.pprof` shows what DDI adds.
		for _, p := range []struct {
			name, file string
			build      func(int, *mrand.Rand) (*http.Request, error)
		}{
			{"P11 DDI base polls, CPU (server child)", "p11-ddi-cpu.pprof", ddiBuild},
			{"P11 native update checks, CPU (the same server child)", "p11-native-cpu.pprof", checkinBuilder(p11NativePrefix, n, ch.Addr)},
		} {
			prof := filepath.Join(dir, p.file)
			spec := loadSpec{Workers: c.Workers, Warmup: c.Warmup, Duration: c.Duration, Build: p.build}
			if err := profileDuring(ctx, client, ch, spec, c.Profile, prof); err != nil {
				return fmt.Errorf("profile: %w", err)
			}
			res.Profiles = append(res.Profiles, Profile{Name: p.name, File: prof, Top: pprofTop(prof)})
		}
	}
	return nil
}

// ddiDevice is DDI device i as the DDI front registers one: the tenant's
// namespace and DeviceEnrollment, no public key, a random token hash
// (never a native bearer token's), plus the version its attributes
// reported (the front runs the rollout rules once the version is known)
// and benchDevice's type and labels.
func ddiDevice(prefix string, i int, now time.Time) devicestore.Device {
	d := benchDevice(prefix, i, now)
	d.KEM, d.PublicKey = ddi.KEMTarget, []byte{} // none, but the column is NOT NULL
	d.Namespace, d.Enrollment = benchNS, p11Enrollment
	d.TokenHash = make([]byte, 32)
	if _, err := rand.Read(d.TokenHash); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return d
}

// ddiFront is the serve child's DDI front (--ddi): the DeviceEnrollment
// and the target-tokens Secret of n DDI devices (deviceToken of prefix)
// compiled as the OTA server's credential watch does.
func ddiFront(srv *otaserver.Server, native http.Handler, prefix string, n int) (http.Handler, error) {
	if prefix == "" || n <= 0 {
		return nil, fmt.Errorf("--ddi needs --ddi-prefix and --ddi-devices > 0")
	}
	es := []otav1.DeviceEnrollment{{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: p11Enrollment},
		Spec: otav1.DeviceEnrollmentSpec{DDI: &otav1.DDIEnrollment{
			DeviceType: deviceType, TargetTokensSecretRef: &otav1.LocalSecretReference{Name: p11Enrollment + "-targets"},
		}},
	}}
	tokens := [][]byte{[]byte(p11EnrollmentToken)}
	creds, problems := otaserver.CompileCredentials(es, tokens)
	if len(problems) > 0 {
		return nil, fmt.Errorf("DDI credentials: %v", problems)
	}
	secret := make(map[string][]byte, n)
	for i := range n {
		secret[deviceID(prefix, i)] = []byte(deviceToken(prefix, i))
	}
	targets, problems := otaserver.CompileDDITokens(es, tokens, []map[string][]byte{secret})
	if len(problems) > 0 || len(targets) != n {
		return nil, fmt.Errorf("DDI target tokens: %d of %d usable: %v", len(targets), n, problems)
	}
	cs := otaserver.NewCredentialSet()
	cs.Replace(creds)
	ts := otaserver.NewDDITokens()
	ts.Replace(targets)
	return ddi.New(ddi.Config{
		Core: srv, Auth: ddi.Credentials(otaserver.DDIAuthenticator{Creds: cs, Targets: ts}),
		ExternalURL: p11ExternalURL, Fallback: native,
	})
}

func nativeCheck(addr, token string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/update?version="+runningVer+"&securityFloor=1", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return req, nil
}

// ddiPoll is DDI device i's base poll.
func ddiPoll(addr string, i int) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/"+benchNS+"/controller/v1/"+deviceID(p11DDIPrefix, i), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "TargetToken "+deviceToken(p11DDIPrefix, i))
	return req, nil
}

// nativeOffer says whether a native answer is an offer (200) or nothing
// (204); anything else fails.
func nativeOffer(resp *http.Response, _ []byte) (bool, error) {
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNoContent:
		return false, nil
	}
	return false, fmt.Errorf("status %d", resp.StatusCode)
}

// ddiOffer says whether a DDI base answer links a deployment; anything
// but a 200 with a base resource fails.
func ddiOffer(resp *http.Response, body []byte) (bool, error) {
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var root ddi.Root
	if err := json.Unmarshal(body, &root); err != nil {
		return false, fmt.Errorf("base resource: %w", err)
	}
	if root.Config.Polling.Sleep == "" {
		return false, fmt.Errorf("base resource without config.polling.sleep: %s", body)
	}
	_, ok := root.Links["deploymentBase"]
	return ok, nil
}

// p11Pass sends one request per device (build(i), i < n) from workers
// keep-alive clients, classifies every answer with offer, and counts the
// offers.
func p11Pass(ctx context.Context, client *http.Client, workers, n int, build func(int) (*http.Request, error), offer func(*http.Response, []byte) (bool, error)) (int, time.Duration, error) {
	start := time.Now()
	var next, offers atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return nil
				}
				req, err := build(i)
				if err != nil {
					return err
				}
				resp, err := client.Do(req.WithContext(gctx))
				if err != nil {
					return err
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					return fmt.Errorf("device %d: %w", i, err)
				}
				ok, err := offer(resp, body)
				if err != nil {
					return fmt.Errorf("device %d: %w", i, err)
				}
				if ok {
					offers.Add(1)
				}
			}
		})
	}
	err := g.Wait()
	return int(offers.Load()), time.Since(start), err
}

// checkDDIAnswers fails a run in which any DDI base poll was not answered
// 200: a 401 or 5xx is cheaper than a real answer and would flatter it.
func checkDDIAnswers(what string, r loadResult) error {
	if r.Requests == 0 {
		return fmt.Errorf("%s: no request answered", what)
	}
	if r.Errors > 0 || r.Statuses[http.StatusOK] != r.Requests {
		return fmt.Errorf("%s: answers %v, %d errors", what, r.Statuses, r.Errors)
	}
	return nil
}

func p11Command(c config) string {
	return fmt.Sprintf("go run ./hack/bench --only=p11 --p11-devices=%d --clients=%d --runs=%d --duration=%s", c.P11Devices, c.Workers, c.Runs, c.Duration)
}
