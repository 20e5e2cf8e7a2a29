package kubectlota

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/otaflow/otaflow/internal/kubectlota/specpatch"
)

type patchOptions struct {
	*options
	action specpatch.Action
	dryRun bool
}

func newPatchCommand(o *options, action specpatch.Action, cmd *cobra.Command) *cobra.Command {
	p := &patchOptions{options: o, action: action}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		wave := ""
		if len(args) > 1 {
			wave = args[1]
		}
		return p.run(cmd.Context(), args[0], wave)
	}
	cmd.Flags().BoolVar(&p.dryRun, "dry-run", false, "print the patch without sending it")
	return cmd
}

func newApproveCommand(o *options) *cobra.Command {
	return newPatchCommand(o, specpatch.Approve, &cobra.Command{
		Use:   "approve ROLLOUT [WAVE]",
		Short: "Pass a manual gate: set spec.approvedWave",
		Long: `Pass the manual gate (pause: {}) after a wave by setting spec.approvedWave.
Without WAVE, the wave waiting for approval now; with WAVE, every manual gate
up to and including that wave's is approved in advance.

Refused when no wave waits (and none is named), when the named wave has no
gate left to approve, and for rollouts that aborted or succeeded.`,
		Example: `  kubectl ota approve sensor-2.1.0-eu
  kubectl ota approve sensor-2.1.0-eu early --dry-run`,
		Args: cobra.RangeArgs(1, 2),
	})
}

func newPauseCommand(o *options) *cobra.Command {
	return newPatchCommand(o, specpatch.Pause, &cobra.Command{
		Use:   "pause ROLLOUT",
		Short: "Hold new offers and new waves: set spec.paused to true",
		Long: `Hold a rollout: no new offers and no new waves; updates in progress go on,
and the failure threshold still aborts. Refused for aborted rollouts and
rollouts already paused.`,
		Args: cobra.ExactArgs(1),
	})
}

func newResumeCommand(o *options) *cobra.Command {
	return newPatchCommand(o, specpatch.Resume, &cobra.Command{
		Use:   "resume ROLLOUT",
		Short: "Undo pause: set spec.paused to false",
		Long: `Resume a rollout paused by spec.paused. Refused when spec.paused is not set
(a rollout waiting at a manual gate needs approve; a timed pause ends by
itself).`,
		Args: cobra.ExactArgs(1),
	})
}

func newAbortCommand(o *options) *cobra.Command {
	return newPatchCommand(o, specpatch.Abort, &cobra.Command{
		Use:   "abort ROLLOUT",
		Short: "Stop a rollout for good: set spec.abort to true",
		Long: `Abort a rollout, from any phase (a succeeded one included): no new offers,
devices not yet installing are told to cancel, and with rollbackOnAbort
(the default) devices that took the release are offered their previous one.
Aborted is final. Refused when the rollout is already aborted.`,
		Args: cobra.ExactArgs(1),
	})
}

func newCommitCommand(o *options) *cobra.Command {
	return newPatchCommand(o, specpatch.Commit, &cobra.Command{
		Use:   "commit ROLLOUT",
		Short: "Commit the security floor before success: set spec.commit to true",
		Long: `Make the release's securityVersion the security floor of every device that
succeeded so far (and of those that succeed later), without waiting for the
rollout to succeed. Until the commit a device can be rolled back to its
previous release, even across a securityVersion bump; after it, it cannot.
Refused for succeeded rollouts (success commits already), aborted ones, and
ones already committed.`,
		Args: cobra.ExactArgs(1),
	})
}

func (p *patchOptions) run(ctx context.Context, name, wave string) error {
	c, ns, err := p.rollouts()
	if err != nil {
		return err
	}
	ro, err := c.Get(ctx, ns, name)
	if err != nil {
		return err
	}
	plan, err := specpatch.For(ro, p.action, wave)
	if err != nil {
		return err
	}
	if owners := specpatch.GitOpsOwners(ro.ManagedFields, plan.Field); len(owners) > 0 {
		fmt.Fprintf(p.streams.ErrOut, "Warning: %s\n", plan.Warning(owners))
	}
	value := fmt.Sprint(plan.Value)
	if s, ok := plan.Value.(string); ok {
		value = fmt.Sprintf("%q", s)
	}
	if p.dryRun {
		fmt.Fprintf(p.streams.Out, "rollout %s: would set %s to %s (dry run: nothing sent)\n", name, plan.Path(), value)
	} else {
		if _, err := c.MergePatch(ctx, ns, name, plan.Patch(), specpatch.FieldManager); err != nil {
			return err
		}
		fmt.Fprintf(p.streams.Out, "rollout %s: %s set to %s\n", name, plan.Path(), value)
	}
	fmt.Fprintf(p.streams.Out, "equivalent patch:\n  %s\n", plan.Kubectl(ns, name))
	return nil
}
