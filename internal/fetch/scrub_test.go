package fetch

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestScrubRemovesCredentialValues(t *testing.T) {
	c := &Credentials{Username: "robot", Password: "hunter2-pw", Token: "tok-123456", SecretAccessKey: "wJalrXUtnFEMI", SessionToken: "sess-abcdef"}
	inner := fmt.Errorf("%w: server said: bad password hunter2-pw for robot, token tok-123456, key wJalrXUtnFEMI, session sess-abcdef, header Basic cm9ib3Q6aHVudGVyMi1wdw==", ErrUnauthorized)
	err := scrub(inner, c)
	for _, secret := range []string{"hunter2-pw", "tok-123456", "wJalrXUtnFEMI", "sess-abcdef", "cm9ib3Q6aHVudGVyMi1wdw=="} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("scrubbed message %q still has %q", err, secret)
		}
	}
	if !errors.Is(err, ErrUnauthorized) {
		t.Error("scrubbing lost the error chain")
	}
	if !strings.Contains(err.Error(), "robot") {
		t.Error("the user name is not a secret and should stay")
	}
	plain := errors.New("nothing secret here")
	if scrub(plain, c) != plain || scrub(plain, nil) != plain || scrub(nil, c) != nil {
		t.Error("scrub changed an error without credentials in it")
	}
	for _, s := range []string{fmt.Sprint(*c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", *c), fmt.Sprintf("%v", c.MarshalLog())} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "tok-") {
			t.Errorf("formatted credentials show a secret: %s", s)
		}
	}
}
