package kubectlota

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/kubectlota/otaclient"
	"github.com/otaflow/otaflow/internal/kubectlota/render"
	"github.com/otaflow/otaflow/internal/kubectlota/rolloutview"
)

type statusOptions struct {
	*options
	watch   bool
	timeout time.Duration
	output  string
	print   *genericclioptions.JSONYamlPrintFlags
}

func newStatusCommand(o *options) *cobra.Command {
	s := &statusOptions{options: o, print: genericclioptions.NewJSONYamlPrintFlags()}
	cmd := &cobra.Command{
		Use:   "status ROLLOUT",
		Short: "Show a rollout: phase, waves with progress bars, gates, thresholds, failures",
		Long: `Show a rollout: its phase and release, each wave with a progress bar
(succeeded, failed, in progress, skipped and offline devices out of the
wave's targeted devices) and its gate, the thresholds with the failure rate
of the current wave and of all waves, the fleet, skipped devices by reason,
recent failures, the conditions and the abort reason.

With --watch, the report is printed again on every change of the rollout,
and the command ends (exit 0) when the rollout aborts, or succeeds. A
rollout with targetSelection: Continuous never ends: after success it keeps
offering the release to devices that join, so its watch ends only when it
is aborted (or on Ctrl-C, or --timeout, which exit non-zero).

-o json|yaml prints the Rollout object instead (each version with --watch).`,
		Example: `  kubectl ota status sensor-2.1.0-eu -n fleet-eu
  kubectl ota status sensor-2.1.0-eu --watch --timeout 2h
  kubectl ota status sensor-2.1.0-eu -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.run(cmd.Context(), args[0])
		},
	}
	cmd.Flags().BoolVarP(&s.watch, "watch", "w", false, "print the report again on every change, until the rollout aborts or succeeds")
	cmd.Flags().DurationVar(&s.timeout, "timeout", 0, "with --watch, give up (exit non-zero) after this long; 0 waits for ever")
	cmd.Flags().StringVarP(&s.output, "output", "o", "", "print the Rollout object: json or yaml")
	s.print.AddFlags(cmd)
	return cmd
}

func (s *statusOptions) run(ctx context.Context, name string) error {
	var printer printers.ResourcePrinter
	if s.output != "" {
		var err error
		if printer, err = objectPrinter(s.print, s.output); err != nil {
			return err
		}
	}
	c, ns, err := s.rollouts()
	if err != nil {
		return err
	}
	ro, err := c.Get(ctx, ns, name)
	if err != nil {
		return err
	}
	show := s.textReport(c)
	if printer != nil {
		show = func(ctx context.Context, ro *otav1.Rollout) error { return printer.PrintObj(ro, s.streams.Out) }
	}
	if err := show(ctx, ro); err != nil {
		return err
	}
	if !s.watch || rolloutview.Finished(ro) {
		return nil
	}
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	err = otaclient.WatchRollout(ctx, c.ListerWatcher(ns, name), ns+"/"+name, ro.ResourceVersion, func(ro *otav1.Rollout) (bool, error) {
		if printer == nil {
			fmt.Fprintf(s.streams.Out, "\n--- %s ---\n", s.now().UTC().Format(time.RFC3339))
		}
		if err := show(ctx, ro); err != nil {
			return false, err
		}
		return rolloutview.Finished(ro), nil
	})
	if errors.Is(err, context.DeadlineExceeded) && s.timeout > 0 {
		return fmt.Errorf("rollout %s did not finish within --timeout %s: %w", name, s.timeout, err)
	}
	return err
}

// textReport renders the report, with the release as it is now (whether
// it is Ready changes).
func (s *statusOptions) textReport(c *otaclient.Rollouts) func(context.Context, *otav1.Rollout) error {
	return func(ctx context.Context, ro *otav1.Rollout) error {
		in := render.StatusInput{Rollout: ro, Command: DisplayName, Now: s.now()}
		rel, err := c.Release(ctx, ro.Namespace, ro.Spec.ReleaseRef.Name)
		switch {
		case apierrors.IsNotFound(err):
			in.ReleaseProblem = "FirmwareRelease not found"
		case err != nil:
			in.ReleaseProblem = "cannot read the FirmwareRelease: " + apiReason(err)
		default:
			in.Release = rel
		}
		return render.Status(s.streams.Out, in)
	}
}

// apiReason is the short form of an API error, for one line of a report.
func apiReason(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return string(st.Status().Reason)
	}
	return err.Error()
}

// objectPrinter prints objects of both API groups as -o json or yaml,
// with their apiVersion and kind set.
func objectPrinter(flags *genericclioptions.JSONYamlPrintFlags, output string) (printers.ResourcePrinter, error) {
	p, err := flags.ToPrinter(output)
	if err != nil {
		return nil, err
	}
	scheme, err := otaclient.Scheme()
	if err != nil {
		return nil, err
	}
	return printers.NewTypeSetter(scheme).ToPrinter(p), nil
}
