package memlimit

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestContainer(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		want    int64
		ok, err bool
	}{
		{"v2 limit", map[string]string{"memory.max": "536870912\n"}, 536870912, true, false},
		{"v2 unlimited", map[string]string{"memory.max": "max\n"}, 0, false, false},
		{"v1 limit", map[string]string{"memory/memory.limit_in_bytes": "1073741824\n"}, 1 << 30, true, false},
		{"v1 unlimited", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, false, false},
		{"no cgroup", nil, 0, false, false},
		{"garbage", map[string]string{"memory.max": "lots"}, 0, false, true},
		{"zero", map[string]string{"memory.max": "0"}, 0, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for f, v := range tc.files {
				p := filepath.Join(root, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, ok, err := Container(root)
			if got != tc.want || ok != tc.ok || (err != nil) != tc.err {
				t.Fatalf("Container = %d, %v, %v; want %d, %v, error %v", got, ok, err, tc.want, tc.ok, tc.err)
			}
		})
	}
}

func TestApply(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "memory.max"), []byte("1000000000"), 0o644); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) (string, bool) { return "", false }
	got, err := Apply(root, 0.8, noEnv)
	if err != nil || got != 800000000 || debug.SetMemoryLimit(-1) != 800000000 {
		t.Fatalf("Apply = %d, %v; runtime limit %d", got, err, debug.SetMemoryLimit(-1))
	}
	// GOMEMLIMIT wins: the runtime already applied it, nothing changes.
	debug.SetMemoryLimit(math.MaxInt64)
	got, err = Apply(root, 0.8, func(k string) (string, bool) { return "300MiB", k == "GOMEMLIMIT" })
	if err != nil || got != math.MaxInt64 {
		t.Fatalf("with GOMEMLIMIT: %d, %v", got, err)
	}
	if _, err := Apply(root, 1.5, noEnv); err == nil {
		t.Fatal("ratio 1.5 accepted")
	}
}
