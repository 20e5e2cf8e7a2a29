package render

import (
	"fmt"
	"io"
	"strings"

	devv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
)

// Why writes a device's decision in plain words: what the device would be
// told if it checked in now, then each rollout's verdict and reason.
func Why(w io.Writer, d *devv1.DeviceDecision) error {
	p := &printer{w: w}
	p.line(fmt.Sprintf("Device %s in namespace %s", d.Name, d.Namespace))
	p.line("If it checked in now, it would be told " + action(d) + ".")
	if len(d.Rollouts) == 0 {
		p.line("No rollout in the namespace considers the device.")
		return p.err
	}
	p.blank()
	p.line("Rollouts, oldest first:")
	for _, v := range d.Rollouts {
		p.line("  " + verdictHead(v))
		p.line("    " + verdictWords(v, d))
	}
	return p.err
}

// action says what the device would be told.
func action(d *devv1.DeviceDecision) string {
	var rel string
	for _, v := range d.Rollouts {
		if v.Rollout == d.Rollout {
			rel = releaseOf(v)
		}
	}
	switch d.Action {
	case "", "Nothing":
		if d.Reason != "" {
			return "nothing to do (" + d.Reason + ")"
		}
		return "nothing to do"
	case "Offer":
		return fmt.Sprintf("to install %s, offered by rollout %s", orLabel(rel, "its release"), d.Rollout)
	case "Resend":
		return fmt.Sprintf("again to install %s: its update in rollout %s is not finished", orLabel(rel, "the release"), d.Rollout)
	case "Cancel":
		return fmt.Sprintf("to cancel its update: rollout %s was aborted", d.Rollout)
	case "Rollback":
		return fmt.Sprintf("to go back to its previous release: rollout %s was aborted", d.Rollout)
	case "Commit":
		return fmt.Sprintf("to commit: raise its security floor to the release it runs (rollout %s committed)", d.Rollout)
	}
	return fmt.Sprintf("%s (rollout %s)", d.Action, orLabel(d.Rollout, "none"))
}

func releaseOf(v devv1.RolloutVerdict) string {
	switch {
	case v.Release != "" && v.Version != "":
		return fmt.Sprintf("release %s (version %s)", v.Release, v.Version)
	case v.Release != "":
		return "release " + v.Release
	case v.Version != "":
		return "version " + v.Version
	}
	return ""
}

func verdictHead(v devv1.RolloutVerdict) string {
	var facts []string
	if r := releaseOf(v); r != "" {
		facts = append(facts, r)
	}
	if v.Wave != nil {
		facts = append(facts, fmt.Sprintf("wave %d", *v.Wave+1))
	}
	if v.State != "" {
		facts = append(facts, "state "+v.State)
	}
	if len(facts) == 0 {
		return v.Rollout
	}
	return v.Rollout + ": " + strings.Join(facts, ", ")
}

// verdictWords explains one verdict, with the server's reason.
func verdictWords(v devv1.RolloutVerdict, d *devv1.DeviceDecision) string {
	var s string
	switch v.Verdict {
	case devv1.VerdictActs:
		s = "acts on the device: it answers this check-in"
		if d.Action != "" {
			s += " (" + d.Action + ")"
		}
		return s
	case devv1.VerdictOffer:
		s = "would offer its release, but another rollout acts on the device"
	case devv1.VerdictWait:
		s = "has nothing for the device yet"
	case devv1.VerdictSkip:
		s = "let go of the device"
		if rest, ok := strings.CutPrefix(v.Reason, "skipped: "); ok {
			return s + " (skipped): " + rest
		}
	case devv1.VerdictCurrent:
		s = "has nothing to do: the device already runs its release"
	case devv1.VerdictDone:
		s = "is done with the device: its record is final"
	case devv1.VerdictNotInFleet:
		s = "does not select the device"
	default:
		s = "says " + v.Verdict
	}
	switch {
	case v.Reason == "" || strings.Contains(s, v.Reason):
		return s
	case strings.Contains(v.Reason, s):
		return v.Reason // the server's words say it already
	}
	return s + ": " + v.Reason
}
