// Package rollout holds otaflow's rollout rules, with one vocabulary for
// the controller and the OTA server: device ranks and wave cutoffs, which
// rollout acts on a device and what it answers a check-in (CheckIn), the
// per-device state machine (ApplyReport, Observe), the wave counters
// (Counts, Tally), and the rollout's phase, gates, thresholds and deadlines
// (Decide). Nothing here does I/O and the time is an input, so every rule
// is tested with tables and with simulated fleet lives (fleetlife_test.go).
// docs/rollouts.md states the rules in prose.
package rollout
