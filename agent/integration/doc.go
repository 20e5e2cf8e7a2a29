// Package integration tests the device agent against a real OTA server:
// envtest's kube-apiserver, the FirmwareRelease controller, the catalog,
// the reporter and otaserver wired as cmd/otaserver wires them.
package integration
