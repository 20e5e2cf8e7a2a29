package kubectlota

import (
	"context"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"

	devv1 "github.com/otaflow/otaflow/api/devices/v1alpha1"
	"github.com/otaflow/otaflow/internal/kubectlota/render"
)

type devicesOptions struct {
	*options
	rollout, state, version, deviceType string
}

func newDevicesCommand(o *options) *cobra.Command {
	d := &devicesOptions{options: o}
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "Count the namespace's devices by version, state, type and protocol",
		Long: `Count the devices of the namespace (its tenant) by running version, by state,
by device type and by protocol, from the aggregated device API. Devices are
read 500 at a time and only counted, so any fleet size works.

With --rollout, only devices with a record in that rollout are counted, and
the states are their states in it; without, each device's state is the one
in the rollout whose record of it changed last.`,
		Example: `  kubectl ota devices -n fleet-eu
  kubectl ota devices --rollout sensor-2.1.0-eu --state failed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return d.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&d.rollout, "rollout", "", "only devices with a record in this rollout (status.rollout)")
	cmd.Flags().StringVar(&d.state, "state", "", "only devices in this state (in --rollout when given)")
	cmd.Flags().StringVar(&d.version, "version", "", "only devices running this version")
	cmd.Flags().StringVar(&d.deviceType, "type", "", "only devices of this device type")
	return cmd
}

// selector is the field selector of the flags, its terms in a fixed order.
func (d *devicesOptions) selector() fields.Selector {
	var terms []fields.Selector
	for _, t := range []struct{ field, value string }{
		{devv1.FieldRollout, d.rollout},
		{devv1.FieldState, d.state},
		{devv1.FieldType, d.deviceType},
		{devv1.FieldVersion, d.version},
	} {
		if t.value != "" {
			terms = append(terms, fields.OneTermEqualSelector(t.field, t.value))
		}
	}
	return fields.AndSelectors(terms...)
}

func (d *devicesOptions) run(ctx context.Context) error {
	c, ns, err := d.devices()
	if err != nil {
		return err
	}
	sum := render.NewDeviceSummary(ns, d.rollout)
	if err := c.Each(ctx, ns, d.selector(), sum.Add); err != nil {
		return err
	}
	return render.Devices(d.streams.Out, sum)
}

func newWhyCommand(o *options) *cobra.Command {
	var output string
	print := genericclioptions.NewJSONYamlPrintFlags()
	cmd := &cobra.Command{
		Use:   "why DEVICE",
		Short: "Say what a device would be told now, and why, rollout by rollout",
		Long: `Ask the device API what the device would be told if it checked in now
(devices/DEVICE/decision: nothing, an offer, a cancel, a rollback, a commit)
and how each rollout of the namespace stands with it, with the reason.
Asking changes nothing. -o json|yaml prints the DeviceDecision object.`,
		Example: `  kubectl ota why sensor-0042 -n fleet-eu
  kubectl ota why sensor-0042 -n fleet-eu -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var printer printers.ResourcePrinter
			if output != "" {
				var err error
				if printer, err = objectPrinter(print, output); err != nil {
					return err
				}
			}
			c, ns, err := o.devices()
			if err != nil {
				return err
			}
			dec, err := c.Decision(cmd.Context(), ns, args[0])
			if err != nil {
				return err
			}
			if printer != nil {
				return printer.PrintObj(dec, o.streams.Out)
			}
			return render.Why(o.streams.Out, dec)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "print the DeviceDecision object: json or yaml")
	return cmd
}
