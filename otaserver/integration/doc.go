// Package integration tests the OTA server end to end against a real API
// server (envtest): the FirmwareRelease controller builds a Ready release,
// devices enroll, download, report, and Rollout.status shows the counts.
package integration
