package kubectlota

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsShowRealOutput: every console example of docs/kubectl.md is one
// of the transcripts the tests here produce, word for word.
func TestDocsShowRealOutput(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "kubectl.md"))
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join("testdata", "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	transcripts := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		transcripts[strings.TrimRight(string(b), "\n")] = p
	}
	blocks := regexp.MustCompile("(?s)```console\n(.*?)\n```").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 8 {
		t.Fatalf("%d console examples in docs/kubectl.md, want one per transcript", len(blocks))
	}
	shown := map[string]bool{}
	for _, b := range blocks {
		p, ok := transcripts[b[1]]
		if !ok {
			first, _, _ := strings.Cut(b[1], "\n")
			t.Errorf("the example starting %q is not a test transcript; copy it from testdata after go test -update", first)
			continue
		}
		shown[p] = true
	}
	for _, p := range paths {
		if !shown[p] {
			t.Errorf("%s is not shown in docs/kubectl.md", p)
		}
	}
}
