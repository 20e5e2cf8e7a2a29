package rollout

// VerdictKind is how one rollout stands with a device at a check-in.
type VerdictKind string

// Verdicts, from the rollout's side.
const (
	// VerdictActs: the rollout answers the check-in (the Answer's action).
	VerdictActs VerdictKind = "Acts"
	// VerdictOffer: the rollout would offer its release, but another
	// rollout acts on the device (a conflict).
	VerdictOffer VerdictKind = "Offer"
	// VerdictWait: the rollout has nothing for the device yet.
	VerdictWait VerdictKind = "Wait"
	// VerdictSkip: the rollout let go of the device (skipped, with why).
	VerdictSkip VerdictKind = "Skip"
	// VerdictCurrent: the device already runs the rollout's release.
	VerdictCurrent VerdictKind = "Current"
	// VerdictDone: the device's record in the rollout is final.
	VerdictDone VerdictKind = "Done"
	// VerdictNotInFleet: the rollout no longer selects the device.
	VerdictNotInFleet VerdictKind = "NotInFleet"
)

// ReasonOtherOwner explains an Offer verdict and a wait behind another
// rollout.
const ReasonOtherOwner = "another rollout acts on the device"

// String names the action as the device API shows it.
func (a Action) String() string {
	switch a {
	case Nothing:
		return "Nothing"
	case Offer:
		return "Offer"
	case Resend:
		return "Resend"
	case Cancel:
		return "Cancel"
	case Rollback:
		return "Rollback"
	case Commit:
		return "Commit"
	}
	return "Unknown"
}

// Verdict is one candidate's stand.
type Verdict struct {
	Kind   VerdictKind
	Reason string
	// Record is the candidate's record after the check-in, nil if none.
	Record *Record
	// Wave is the device's wave in the rollout, -1 when not known yet.
	Wave int
}

// Explanation is a check-in decided by CheckIn with each candidate's
// verdict, for explaining why a device is or is not offered an update.
type Explanation struct {
	Outcome  Outcome
	Verdicts []Verdict // by candidate index
}

// Explain decides a check-in exactly as CheckIn does and says how each
// candidate stands. It writes nothing: callers show it, never store it.
func Explain(d DeviceView, cands []Candidate) Explanation {
	out := CheckIn(d, cands)
	recs := make([]*Record, len(cands))
	for i, c := range cands {
		if c.Record != nil {
			r := *c.Record
			recs[i] = &r
		}
	}
	for _, w := range out.Writes {
		r := w.Record
		recs[w.Candidate] = &r
	}
	conflict := map[int]bool{}
	for _, i := range out.Conflicts {
		conflict[i] = true
	}
	vs := make([]Verdict, len(cands))
	for i, c := range cands {
		v := Verdict{Record: recs[i], Wave: -1}
		if recs[i] != nil {
			v.Wave = recs[i].Wave
		} else if c.View.Cutoffs != nil {
			v.Wave = WaveOf(c.Rank, c.View.Cutoffs)
		}
		r := recs[i]
		switch {
		case i == out.Answer.Candidate && out.Answer.Action != Nothing:
			v.Kind, v.Reason = VerdictActs, out.Answer.Action.String()
		case i == out.Answer.Candidate:
			v.Kind, v.Reason = VerdictWait, out.Answer.Reason
		case conflict[i]:
			v.Kind, v.Reason = VerdictOffer, ReasonOtherOwner
		case r != nil && (r.State.InProgress() || r.RollbackOffered && !r.State.Final()):
			// Unfinished business, but an older rollout holds the device.
			v.Kind, v.Reason = VerdictWait, ReasonOtherOwner
		case r != nil && r.State == StateSkipped:
			v.Kind, v.Reason = VerdictSkip, r.Reason
		case r != nil && r.State == StateCurrent:
			v.Kind, v.Reason = VerdictCurrent, r.Reason
		case r != nil:
			v.Kind, v.Reason = VerdictDone, string(r.State)
			if r.Reason != "" {
				v.Reason += ": " + r.Reason
			}
		case !c.Matches:
			v.Kind, v.Reason = VerdictNotInFleet, "the rollout does not select the device"
		default:
			v.Kind, v.Reason = VerdictWait, fresh(d, c).reason
		}
		vs[i] = v
	}
	return Explanation{Outcome: out, Verdicts: vs}
}
