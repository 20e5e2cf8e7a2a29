// Package mcu runs the C device library's tests (mcu/, docs/mcu.md) from
// go test, so make test covers them: the host build with every
// conformance vector, the unit tests and the fuzz seed corpora under
// clang's sanitizers; the Cortex-M4 build under QEMU with the same
// vectors and the update path; and the footprint budget, held to the
// figures docs/mcu.md prints. The tools come from hack/ensure-mcu-tools.sh
// (make mcu-tools, a prerequisite of make test).
package mcu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otaflow/otaflow/internal/mcufootprint"
)

// budget is the RAM the update path may use, the chunk buffer included.
const budget = 32 * 1024

var root = func() string {
	r, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	return r
}()

// run runs a command in the repository and returns its output; a failure
// ends the test with the output's tail.
func run(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s: %s", name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	if err != nil {
		s := out.String()
		if len(s) > 6000 {
			s = "…" + s[len(s)-6000:]
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, s)
	}
	return out.String()
}

var (
	fileLine  = regexp.MustCompile(`(?m)^(\d-[a-z-]+\.json): (\d+)/(\d+) vectors passed`)
	totalLine = regexp.MustCompile(`(?m)^conformance: (\d+)/(\d+) vectors passed$`)
)

// vectorCounts returns passed/run per conformance file from a runner's
// output, failing unless every file of testdata/conformance ran and passed.
func vectorCounts(t *testing.T, out string) map[string]int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "testdata", "conformance", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance files: %v", err)
	}
	got := map[string]int{}
	for _, m := range fileLine.FindAllStringSubmatch(out, -1) {
		passed, _ := strconv.Atoi(m[2])
		ran, _ := strconv.Atoi(m[3])
		if passed != ran || ran == 0 {
			t.Errorf("%s: %d of %d vectors passed", m[1], passed, ran)
		}
		got[m[1]] = ran
	}
	for _, f := range files {
		var doc struct{ Vectors []json.RawMessage }
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		if n := got[filepath.Base(f)]; n != len(doc.Vectors) {
			t.Errorf("%s: the runner ran %d vectors, the file has %d", filepath.Base(f), n, len(doc.Vectors))
		}
	}
	if m := totalLine.FindStringSubmatch(out); m == nil || m[1] != m[2] {
		t.Errorf("the runner did not pass all vectors: %v", m)
	}
	return got
}

var clientKeysLine = regexp.MustCompile(`(?m)^client keys: ([1-9]\d*) checks passed$`)

// clientKeyChecks returns how many checks test_client_keys passed, failing
// when it did not run.
func clientKeyChecks(t *testing.T, out string) int {
	t.Helper()
	m := clientKeysLine.FindStringSubmatch(out)
	if m == nil {
		t.Error("the client's key-following test did not run")
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestMCU builds and runs everything of mcu/ in order: the host and
// Cortex-M4 builds share generated inputs, so they do not run in parallel.
func TestMCU(t *testing.T) {
	var host map[string]int
	var hostKeys int
	t.Run("host", func(t *testing.T) {
		out := run(t, 20*time.Minute, "make", "-C", "mcu", "test")
		host = vectorCounts(t, out)
		checkEd25519(t, out)
		hostKeys = clientKeyChecks(t, out)
		// The fuzz targets (one seed corpus each) ran their seeds under
		// the sanitizers.
		corpora, err := filepath.Glob(filepath.Join(root, "mcu", "fuzz", "corpus", "*"))
		if err != nil || len(corpora) == 0 {
			t.Fatalf("no fuzz corpora: %v", err)
		}
		for _, c := range corpora {
			target := "fuzz_" + filepath.Base(c)
			if !regexp.MustCompile(`(?m)^` + target + `: [1-9]\d* seeds ok$`).MatchString(out) {
				t.Errorf("fuzz target %s did not run its seeds", target)
			}
		}
	})
	var path updatePath
	t.Run("cortex-m4", func(t *testing.T) {
		out := run(t, 20*time.Minute, "make", "-C", "mcu", "qemu")
		m4 := vectorCounts(t, out)
		for f, n := range host {
			if m4[f] != n {
				t.Errorf("%s: %d vectors on the Cortex-M4, %d on the host", f, m4[f], n)
			}
		}
		checkEd25519(t, out)
		if n := clientKeyChecks(t, out); n != hostKeys {
			t.Errorf("key following: %d checks on the Cortex-M4, %d on the host", n, hostKeys)
		}
		path = parseUpdatePath(t, out)
		if !strings.Contains(out, "client: poll without a network: io;") {
			t.Error("the whole client did not run on the Cortex-M4")
		}
	})
	t.Run("footprint", func(t *testing.T) {
		if path.stack == 0 {
			t.Fatal("no update path figures from the Cortex-M4 run")
		}
		fp := footprint(t, "update_path.map", path)
		client := footprint(t, "client_size.map", path)
		fp.ClientFlash, fp.ClientCryptoFlash = client.LibFlash, client.CryptoFlash
		t.Logf("footprint: %+v", fp)
		if fp.RAM > budget {
			t.Errorf("the update path needs %d bytes of RAM, the budget is %d", fp.RAM, budget)
		}
		checkDocs(t, fp)
	})
}

var ed25519Line = regexp.MustCompile(`ed25519: (\d+) cases, (\d+) mismatches with Go`)

// checkEd25519: the differential Ed25519 test ran, with no mismatch.
func checkEd25519(t *testing.T, out string) {
	t.Helper()
	m := ed25519Line.FindStringSubmatch(out)
	if m == nil {
		t.Fatal("the Ed25519 differential test did not run")
	}
	if n, _ := strconv.Atoi(m[1]); n < 1000 || m[2] != "0" {
		t.Errorf("Ed25519: %s cases, %s mismatches with Go", m[1], m[2])
	}
}

type updatePath struct{ stack, heap, state, segment int }

var pathLine = regexp.MustCompile(`update path: stack peak (\d+) bytes, mbedTLS heap peak (\d+) bytes, state (\d+) bytes \(of which network segment (\d+)\)`)

func parseUpdatePath(t *testing.T, out string) updatePath {
	t.Helper()
	if !strings.Contains(out, "update: ok; tampered chunk: auth") {
		t.Errorf("the update path did not install, or did not refuse the tampered chunk")
	}
	m := pathLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no update path figures in the output")
	}
	var p updatePath
	p.stack, _ = strconv.Atoi(m[1])
	p.heap, _ = strconv.Atoi(m[2])
	p.state, _ = strconv.Atoi(m[3])
	p.segment, _ = strconv.Atoi(m[4])
	return p
}

// Footprint is what docs/mcu.md's table prints.
type Footprint struct {
	LibFlash, CryptoFlash int // text + rodata of libotaflow.a and libmbedcrypto.a
	// The same for the whole client (client_size.elf).
	ClientFlash, ClientCryptoFlash int
	LibStatic                      int // data + bss of both archives
	State, Heap, Stack             int // the update path
	RAM                            int // LibStatic + State + Heap + Stack (the segment excluded)
}

// footprint reads the Cortex-M4 linker map mapName of mcu/build/cortex-m4.
func footprint(t *testing.T, mapName string, p updatePath) Footprint {
	t.Helper()
	r, err := mcufootprint.ParseFile(filepath.Join(root, "mcu", "build", "cortex-m4", mapName), []string{"libotaflow.a"})
	if err != nil {
		t.Fatal(err)
	}
	var f Footprint
	for _, g := range r.Groups {
		switch g.Name {
		case "libotaflow.a":
			f.LibFlash = int(g.Flash)
			f.LibStatic += int(g.Data + g.BSS)
		case "libmbedcrypto.a":
			f.CryptoFlash = int(g.Flash)
			f.LibStatic += int(g.Data + g.BSS)
		}
	}
	if f.LibFlash == 0 || f.CryptoFlash == 0 {
		t.Fatalf("%s has no library or mbedTLS code: %+v", mapName, r.Groups)
	}
	f.State, f.Heap, f.Stack = p.state-p.segment, p.heap, p.stack
	f.RAM = f.LibStatic + f.State + f.Heap + f.Stack
	return f
}

var docRow = regexp.MustCompile(`(?m)^\| (.+?) \| ([\d,]+) \|`)

// checkDocs holds docs/mcu.md's footprint table to the measurement: each
// figure within 3% (toolchain updates move a few bytes).
func checkDocs(t *testing.T, f Footprint) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docs", "mcu.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"Flash: otaflow library (update path)":      f.LibFlash,
		"Flash: mbedTLS (what it pulls in)":         f.CryptoFlash,
		"RAM: static data and bss":                  f.LibStatic,
		"RAM: update state (chunk buffer included)": f.State,
		"RAM: mbedTLS heap, peak":                   f.Heap,
		"RAM: stack, peak":                          f.Stack,
		"RAM: total on the update path":             f.RAM,
		"Flash: otaflow library (whole client)":     f.ClientFlash,
		"Flash: mbedTLS (whole client)":             f.ClientCryptoFlash,
	}
	seen := map[string]bool{}
	for _, m := range docRow.FindAllStringSubmatch(string(data), -1) {
		name := strings.TrimSpace(m[1])
		measured, ok := want[name]
		if !ok {
			continue
		}
		seen[name] = true
		doc, _ := strconv.Atoi(strings.ReplaceAll(m[2], ",", ""))
		if diff := doc - measured; diff*100 > 3*measured || -diff*100 > 3*measured {
			t.Errorf("docs/mcu.md says %q is %d bytes, measured %d: update the table", name, doc, measured)
		}
	}
	for name, v := range want {
		if !seen[name] {
			t.Errorf("docs/mcu.md has no row %q (measured %s)", name, fmt.Sprint(v))
		}
	}
}
