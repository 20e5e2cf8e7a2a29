// Package controllers holds the otaflow reconcilers: FirmwareRelease turns a
// signed image into a verified, encrypted-once artifact; Rollout turns a
// release and a fleet into canary waves.
package controllers
