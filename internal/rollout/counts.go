package rollout

// Counts are one wave's device counters: what the OTA server reports in
// status.waves[] and what the controller decides from.
type Counts struct {
	// Targeted devices: the wave's share of the rollout's fleet.
	Targeted int64
	// Offered devices: given an assignment (current and skipped devices
	// were not).
	Offered    int64
	InProgress int64
	// Succeeded devices, including those found already running the release.
	Succeeded      int64
	Failed         int64
	TimedOut       int64
	Canceled       int64
	Skipped        int64
	RolledBack     int64
	RollbackFailed int64
	// Offline devices: in the wave, never offered anything, and not seen
	// for offlineAfter.
	Offline int64
}

// Tally counts a wave from its records by state, its fleet share and its
// offline devices.
func Tally(targeted, offline int64, byState map[State]int64) Counts {
	c := Counts{Targeted: targeted, Offline: offline}
	for st, n := range byState {
		if st.Offered() {
			c.Offered += n
		}
		switch {
		case st.InProgress():
			c.InProgress += n
		case st == StateSucceeded || st == StateCurrent:
			c.Succeeded += n
		case st == StateFailed:
			c.Failed += n
		case st == StateTimedOut:
			c.TimedOut += n
		case st == StateCanceled:
			c.Canceled += n
		case st == StateSkipped:
			c.Skipped += n
		case st == StateRolledBack:
			c.RolledBack += n
		case st == StateRollbackFailed:
			c.RollbackFailed += n
		}
	}
	return c
}

// Add sums two counters.
func (c Counts) Add(o Counts) Counts {
	return Counts{
		Targeted: c.Targeted + o.Targeted, Offered: c.Offered + o.Offered, InProgress: c.InProgress + o.InProgress,
		Succeeded: c.Succeeded + o.Succeeded, Failed: c.Failed + o.Failed, TimedOut: c.TimedOut + o.TimedOut,
		Canceled: c.Canceled + o.Canceled, Skipped: c.Skipped + o.Skipped, RolledBack: c.RolledBack + o.RolledBack,
		RollbackFailed: c.RollbackFailed + o.RollbackFailed, Offline: c.Offline + o.Offline,
	}
}

// Failures are failed and timed-out devices: what the failure threshold
// counts.
func (c Counts) Failures() int64 { return c.Failed + c.TimedOut }

// Reachable is the success denominator: targeted devices that were not
// skipped and are not offline.
func (c Counts) Reachable() int64 { return max(0, c.Targeted-c.Skipped-c.Offline) }

// Untouched devices are reachable and have no record yet: they may still
// be offered the release.
func (c Counts) Untouched() int64 {
	touched := c.InProgress + c.Succeeded + c.Failed + c.TimedOut + c.Canceled + c.Skipped + c.RolledBack + c.RollbackFailed
	return max(0, c.Targeted-touched-c.Offline)
}
