package otaserver

import (
	"net/http"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// info answers GET /v1/info: what this server speaks, so that a device or a
// tool can check before relying on an optional behaviour. It needs no
// authentication and says nothing about devices or rollouts.
func (s *Server) info(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, protov1.Info{
		Protocol: protov1.Name,
		Revision: protov1.Revision,
		Features: []string{protov1.FeatureCommit, protov1.FeatureBoot, protov1.FeatureNonce},
		// One key today; a key set when signing keys rotate.
		AssignmentKeyIDs: []string{s.cfg.Signer.KeyID()},
	})
}
