package v1

import "github.com/otaflow/otaflow/protocol/v1/assignment"

// KeySetResponse is the answer of GET /v1/keys (no authentication): the
// public halves of every assignment key the server holds, at a serial,
// signed by each of them. Package assignment encodes and checks it
// (assignment.SignKeySet, assignment.Trust.Update); docs/protocol.md
// ("Assignment keys and their rotation") specifies it.
type KeySetResponse = assignment.SignedKeySet

// ReasonUntrustedSigningKey starts the reason of a "failed" report sent
// because an assignment is signed by a key the device does not trust, even
// after it fetched the server's key set (a device that was offline through
// a whole key rotation). The reason names the key ID, so operators see in
// the Rollout's failures which devices need their trust restored.
const ReasonUntrustedSigningKey = "untrusted-signing-key"
