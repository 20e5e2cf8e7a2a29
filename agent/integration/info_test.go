package integration_test

import (
	"net/http"
	"slices"
	"testing"

	"github.com/otaflow/otaflow/agent"
	"github.com/otaflow/otaflow/internal/contract"
	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// TestServerInfo: the agent reads the real server's capabilities, and
// request and answer match docs/openapi.yaml.
func TestServerInfo(t *testing.T) {
	f := newFixture(t, 1000)
	d := newDevice(t, f, "dev-info", agent.NewMemStore(), &agent.ABSlots{Dir: t.TempDir()})
	d.cfg.HTTPClient = &http.Client{Transport: contract.For(t).Wrap(http.DefaultTransport)}
	info, err := d.start(t).ServerInfo(rootCtx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Protocol != protov1.Name || info.Revision != protov1.Revision {
		t.Fatalf("info %+v, want protocol %s revision %d", info, protov1.Name, protov1.Revision)
	}
	for _, f := range []string{protov1.FeatureCommit, protov1.FeatureBoot, protov1.FeatureNonce, protov1.FeatureSealedToken, protov1.FeatureKeyRotation} {
		if !slices.Contains(info.Features, f) {
			t.Errorf("features %v lack %q", info.Features, f)
		}
	}
	if len(info.AssignmentKeyIDs) != 1 || info.AssignmentKeyIDs[0] == "" {
		t.Fatalf("assignment key IDs %v, want the one signing key", info.AssignmentKeyIDs)
	}
}
