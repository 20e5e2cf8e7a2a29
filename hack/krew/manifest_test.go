// Package krew holds the Krew manifest template of `kubectl ota`; this test
// renders it as hack/krew-manifest.sh does, with fake digests.
package krew

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type manifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Description      string `json:"description"`
		Caveats          string `json:"caveats"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

// scriptPlatforms reads the platforms hack/krew-manifest.sh builds.
func scriptPlatforms(t *testing.T) ([]string, string) {
	t.Helper()
	b, err := os.ReadFile("../krew-manifest.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^platforms=\(([^)]*)\)`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("no platforms=(...) line in hack/krew-manifest.sh")
	}
	return strings.Fields(m[1]), string(b)
}

// fakeDigest is a distinct digest per platform.
func fakeDigest(os, arch string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(os+"/"+arch)))
}

// render fills the template the way the script's sed does.
func render(t *testing.T, version string, platforms []string) string {
	t.Helper()
	b, err := os.ReadFile("ota.yaml.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "{{VERSION}}", version)
	for _, p := range platforms {
		osName, arch, _ := strings.Cut(p, "/")
		key := strings.ToUpper("SHA256_" + osName + "_" + arch)
		s = strings.ReplaceAll(s, "{{"+key+"}}", fakeDigest(osName, arch))
	}
	return s
}

func TestManifestTemplate(t *testing.T) {
	platforms, script := scriptPlatforms(t)
	want := []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64", "windows/amd64"}
	if got := slices.Sorted(slices.Values(platforms)); !slices.Equal(got, want) {
		t.Fatalf("the script builds %v, want %v", got, want)
	}
	const version = "v1.2.3"
	out := render(t, version, platforms)
	if strings.Contains(out, "{{") {
		t.Fatalf("placeholders left after filling every platform the script builds:\n%s", out)
	}
	var m manifest
	if err := yaml.UnmarshalStrict([]byte(out), &m); err != nil {
		t.Fatalf("rendered manifest: %v\n%s", err, out)
	}
	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" || m.Metadata.Name != "ota" {
		t.Errorf("header %s %s %s", m.APIVersion, m.Kind, m.Metadata.Name)
	}
	if m.Spec.Version != version || m.Spec.ShortDescription == "" || m.Spec.Description == "" || m.Spec.Homepage == "" {
		t.Errorf("spec %+v", m.Spec)
	}
	var got []string
	for _, p := range m.Spec.Platforms {
		osName, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		got = append(got, osName+"/"+arch)
		archive := fmt.Sprintf("kubectl-ota_%s_%s_%s.tar.gz", version, osName, arch)
		if want := "https://github.com/otaflow/otaflow/releases/download/" + version + "/" + archive; p.URI != want {
			t.Errorf("%s/%s: uri %s, want %s", osName, arch, p.URI, want)
		}
		if p.SHA256 != fakeDigest(osName, arch) {
			t.Errorf("%s/%s: sha256 %s is not its own archive's", osName, arch, p.SHA256)
		}
		bin := "kubectl-ota"
		if osName == "windows" {
			bin += ".exe"
		}
		if p.Bin != bin {
			t.Errorf("%s/%s: bin %s, want %s", osName, arch, p.Bin, bin)
		}
	}
	if slices.Sort(got); !slices.Equal(got, want) {
		t.Errorf("manifest platforms %v, want %v", got, want)
	}
	// The script names the archives as the manifest's URIs do.
	if !strings.Contains(script, "archive=kubectl-ota_${version}_${os}_${arch}.tar.gz") {
		t.Error("hack/krew-manifest.sh does not name archives kubectl-ota_VERSION_OS_ARCH.tar.gz")
	}
}

func TestManifestScriptSyntax(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	if out, err := exec.Command(bash, "-n", "../krew-manifest.sh").CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	// A bad version is refused before anything is built.
	out, err := exec.Command(bash, "../krew-manifest.sh", "1.2.3").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "usage:") {
		t.Fatalf("version without v accepted: %v\n%s", err, out)
	}
}
