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
		Features: []string{protov1.FeatureCommit, protov1.FeatureBoot, protov1.FeatureNonce, protov1.FeatureSealedToken, protov1.FeatureKeyRotation},
		// Current first; GET /v1/keys serves the signed set.
		AssignmentKeyIDs: s.cfg.Signer.(*SigningKeys).KeyIDs(),
	})
}
