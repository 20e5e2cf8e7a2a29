// Package mendertest runs the real Mender client (Debian's mender-client
// 3.4, `mender daemon`) and mender-artifact 3.9 in tests, without changing
// anything on the host.
//
// WriteArtifact builds update-module artifacts with mender-artifact
// (optionally signed); GenerateKey makes device keys (RSA 3072, ECDSA
// P-256, Ed25519). Start runs `mender daemon` against a server the test
// starts. The client hard-codes /etc/mender, /usr/share/mender and
// /var/lib/mender, so it runs as PID 1 of its own PID and mount namespace
// (unshare, which needs root) with overlay mounts over /etc, /usr/share and
// /var/lib whose upper directories are the test's temporary directories:
// the configuration, the identity and inventory scripts and two harmless
// update modules live there, and the mounts vanish with the process. The
// modules, ModuleType and FailingModuleType, install an artifact's files
// into the device's Target directory or fail with FailureMessage.
//
// The binaries come from hack/ensure-mender.sh (make mender), which
// unpacks the Debian packages into bin/mender; OTAFLOW_MENDER names that
// directory. A missing binary fails the test, never skips it.
package mendertest
