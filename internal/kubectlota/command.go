// Package kubectlota is the `kubectl ota` plugin: its cobra commands over
// kubectl's connection flags. The commands only wire flags to the clients
// (otaclient), the rules (specpatch, rolloutview) and the text (render).
package kubectlota

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"

	"github.com/otaflow/otaflow/internal/kubectlota/otaclient"
)

// DisplayName is how users type the plugin.
const DisplayName = "kubectl ota"

// options are shared by every command.
type options struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	now     func() time.Time
}

// NewCommand is the root command, `kubectl ota`.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	return newCommand(streams, time.Now)
}

func newCommand(streams genericiooptions.IOStreams, now func() time.Time) *cobra.Command {
	o := &options{
		flags:   genericclioptions.NewConfigFlags(true),
		streams: streams,
		now:     now,
	}
	root := &cobra.Command{
		Use:   "kubectl-ota",
		Short: "Follow and steer otaflow firmware rollouts",
		Long: `Follow and steer otaflow firmware rollouts (ota.otaflow.io Rollouts) and look
at the devices of the aggregated device API (devices.ota.otaflow.io).

Every change (approve, pause, resume, abort, commit) is a JSON merge patch of
one spec field, sent with field manager kubectl-ota; each command prints the
equivalent kubectl patch, so the change can go into git instead.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: DisplayName},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	o.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(
		newStatusCommand(o),
		newApproveCommand(o),
		newPauseCommand(o),
		newResumeCommand(o),
		newAbortCommand(o),
		newCommitCommand(o),
		newDevicesCommand(o),
		newWhyCommand(o),
	)
	return root
}

// namespace is the namespace of -n, or of the kubeconfig's context.
func (o *options) namespace() (string, error) {
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("namespace from kubeconfig: %w", err)
	}
	return ns, nil
}

func (o *options) restConfig() (*rest.Config, error) {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

func (o *options) rollouts() (*otaclient.Rollouts, string, error) {
	cfg, err := o.restConfig()
	if err != nil {
		return nil, "", err
	}
	ns, err := o.namespace()
	if err != nil {
		return nil, "", err
	}
	c, err := otaclient.NewRollouts(cfg)
	return c, ns, err
}

func (o *options) devices() (*otaclient.Devices, string, error) {
	cfg, err := o.restConfig()
	if err != nil {
		return nil, "", err
	}
	ns, err := o.namespace()
	if err != nil {
		return nil, "", err
	}
	c, err := otaclient.NewDevices(cfg)
	return c, ns, err
}
