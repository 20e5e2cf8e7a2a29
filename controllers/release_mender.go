package controllers

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/menderartifact"
)

// Errors of a Mender release's header check; both are permanent: the image
// is pinned by spec.source.sha256, so only a new release fixes them.
var (
	errMenderInvalid  = errors.New("not a usable Mender artifact")
	errMenderMismatch = errors.New("Mender artifact does not fit the release")
)

// checkMenderHeader reads the header of the image the sniffer kept and
// checks it against the release: every device type the release is for
// must be one the artifact is compatible with, or mender-client would
// refuse it on the device after the download.
func checkMenderHeader(rel *otav1.FirmwareRelease, s *menderartifact.Sniffer) (*otav1.MenderArtifact, error) {
	h, err := s.Header()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMenderInvalid, err)
	}
	var missing []string
	for _, t := range rel.Spec.Compatibility.DeviceTypes {
		if !slices.Contains(h.DeviceTypes, t) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: artifact %q is compatible with device types [%s], not with %s of spec.compatibility.deviceTypes",
			errMenderMismatch, h.Name, strings.Join(h.DeviceTypes, ", "), strings.Join(missing, ", "))
	}
	return &otav1.MenderArtifact{
		Name:         h.Name,
		DeviceTypes:  slices.Clone(h.DeviceTypes),
		PayloadTypes: slices.Clone(h.PayloadTypes),
		Signed:       h.Signed,
	}, nil
}
