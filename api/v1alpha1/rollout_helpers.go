package v1alpha1

// Totals sums the device counters of all waves.
func (s *RolloutStatus) Totals() WaveStatus {
	var t WaveStatus
	for _, w := range s.Waves {
		t.Targeted += w.Targeted
		t.Offered += w.Offered
		t.InProgress += w.InProgress
		t.Succeeded += w.Succeeded
		t.Failed += w.Failed
		t.TimedOut += w.TimedOut
		t.RolledBack += w.RolledBack
		t.RollbackFailed += w.RollbackFailed
		t.Canceled += w.Canceled
		t.Skipped += w.Skipped
		t.Offline += w.Offline
	}
	return t
}
