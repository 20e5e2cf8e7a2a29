package ddi

import (
	"errors"
	"fmt"
	"time"

	"github.com/otaflow/otaflow/otaserver"
)

// errBadController: the path's controllerId is not a device ID (404).
var errBadController = errors.New("ddi: controllerId is not a device ID")

// Credentials authenticates with the DeviceEnrollments' DDI settings and
// target tokens (otaserver.DDIAuthenticator).
func Credentials(a otaserver.DDIAuthenticator) Authenticator { return credentialAuth{a} }

type credentialAuth struct{ a otaserver.DDIAuthenticator }

func (c credentialAuth) AuthenticateDDI(header, tenant, id string, now time.Time) (Grant, error) {
	au, err := c.a.AuthenticateDDI(header, tenant, id, now)
	var refused *otaserver.DDIRefusedError
	switch {
	case errors.Is(err, otaserver.ErrDDIBadControllerID):
		return Grant{}, errBadController
	case errors.As(err, &refused):
		// The token is proven: devices registered earlier are served,
		// new ones are not registered (as natively enrolled devices keep
		// working after their enrollment expires).
		g := grantOf(au)
		g.RegisterRefused = refused.Error()
		return g, nil
	case err != nil:
		return Grant{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return grantOf(au), nil
}

func grantOf(au otaserver.DDIAuth) Grant {
	g := Grant{Namespace: au.Namespace, Enrollment: au.Enrollment, Gateway: au.Gateway}
	if cr := au.Credential; cr != nil {
		g.MaxDevices = cr.MaxDevices
		if cr.DDI != nil {
			g.DeviceType, g.Labels = cr.DDI.DeviceType, cr.DDI.Labels
		}
	}
	if g.DeviceType == "" && g.RegisterRefused == "" {
		g.RegisterRefused = "the DeviceEnrollment has no spec.ddi"
	}
	return g
}
