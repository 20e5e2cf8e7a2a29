package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	protov1 "github.com/otaflow/otaflow/protocol/v1"
)

// ServerInfo asks the server what it speaks (GET /v1/info). The agent does
// not need it to work: every v1 server handles the core protocol. It lets a
// device or its operator check an optional feature before relying on it.
func (a *Agent) ServerInfo(ctx context.Context) (protov1.Info, error) {
	r, err := a.call(ctx, http.MethodGet, protov1.PathInfo, nil, false)
	if err != nil {
		return protov1.Info{}, fmt.Errorf("server info: %w", err)
	}
	var info protov1.Info
	if err := json.Unmarshal(r.Body, &info); err != nil {
		return protov1.Info{}, fmt.Errorf("server info: %w", err)
	}
	if info.Protocol != protov1.Name {
		return info, fmt.Errorf("server info: server speaks %q, not %q", info.Protocol, protov1.Name)
	}
	return info, nil
}
