// Package agent is the device side of otaflow's protocol v1
// (docs/protocol.md): a library device makers embed, or run as
// cmd/ota-agent.
//
// An Agent enrolls with a bootstrap token, polls GET /v1/update, verifies
// every signed assignment with the assignment keys it trusts (provisioned,
// then following the server's signed key set, GET /v1/keys), downloads
// the encrypted image with resumable Range requests, decrypts and verifies
// it chunk by chunk, checks the plaintext SHA-256 and the vendor signature,
// hands the image to an Installer, reboots through a hook, and after boot
// confirms the new version and reports the outcome. Everything the agent
// must not forget across a power cut (device key, token, trusted assignment
// keys, committed and pending security floor, the assignment being worked on, verified download progress, pending
// reports) lives behind a StateStore; DirStore writes it atomically,
// MemStore keeps it in memory for simulators.
//
// Nothing unverified is ever installed: chunks reach the staging area only
// after their GCM tag verified, and the installer is called only after the
// whole plaintext matched plainSHA256 and the vendor signature verified
// with a trusted key. The security floor never decreases and no image below
// it is installed. It is raised when the rollout that installed the running
// release commits (a signed commit answer), not at boot, so that release
// can still be rolled back to the previous one until then.
//
// docs/agent.md describes provisioning, configuration, the state directory
// and the refusal reasons.
package agent
