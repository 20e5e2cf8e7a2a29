// Package eligibility holds the OTA server's pure rollout logic: device
// ranks and wave cutoffs (DESIGN §4), which rollout holds a device, the offer
// decision for a check-in, and the per-rollout device state machine. Nothing
// here does I/O, so every rule is table-tested.
package eligibility
