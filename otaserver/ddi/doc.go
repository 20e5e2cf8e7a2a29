// Package ddi is the OTA server's hawkBit Direct Device Integration (DDI)
// API v1 front, for device fleets that run SWUpdate's suricatta or
// rauc-hawkbit-updater (docs/hawkbit-ddi.md).
//
// It translates: a base poll is a check-in decided by the same rollout
// rules as a native one (otaserver.Server.Decide), feedback is a status
// report applied by the same rules (otaserver.Server.Report), and the
// device store is the same. A DDI tenant is a namespace; a controllerId is
// a device ID. Only the rendering is DDI's: HAL links, action ids, the
// artifact streamed as plaintext from the encrypted blob.
package ddi
