package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/fetch"
)

// errSourceCredentials marks a problem with the source's credentials
// Secret: missing or unreadable (reason SourceCredentialsUnavailable,
// retried) or holding keys the scheme cannot use (SourceCredentialsInvalid,
// permanent until the Secret changes). Messages name keys, never values.
type errSourceCredentials struct {
	reason string
	err    error
}

func (e *errSourceCredentials) Error() string { return e.err.Error() }
func (e *errSourceCredentials) Unwrap() error { return e.err }

func asSourceCredentialsError(err error) (*errSourceCredentials, bool) {
	var e *errSourceCredentials
	ok := errors.As(err, &e)
	return e, ok
}

// fetchSource is what the fetcher needs for the release's image, the
// credentials read from spec.source.secretRef included. The Secret is read
// uncached (decision 6), only when an image is about to be fetched.
func fetchSource(ctx context.Context, reader client.Reader, rel *otav1.FirmwareRelease) (fetch.Source, error) {
	spec := rel.Spec.Source
	src := fetch.Source{URL: spec.URL, SHA256: spec.SHA256, ExpectedSize: -1}
	if spec.Size != nil {
		src.ExpectedSize = *spec.Size
	}
	if s := spec.S3; s != nil {
		src.S3 = fetch.S3Options{Endpoint: s.Endpoint, Region: s.Region, Insecure: s.Insecure}
	}
	if o := spec.OCI; o != nil {
		src.OCI = fetch.OCIOptions{Insecure: o.Insecure}
	}
	if spec.SecretRef == nil {
		return src, nil
	}
	name := spec.SecretRef.Name
	var s corev1.Secret
	if err := reader.Get(ctx, types.NamespacedName{Namespace: rel.Namespace, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return src, &errSourceCredentials{otav1.ReasonSourceCredentialsUnavailable, fmt.Errorf("source credentials Secret %s not found", name)}
		}
		return src, &errSourceCredentials{otav1.ReasonSourceCredentialsUnavailable, fmt.Errorf("read source credentials Secret %s: %w", name, err)}
	}
	scheme, _, _ := strings.Cut(spec.URL, "://")
	creds, err := sourceCredentials(scheme, name, s.Data)
	if err != nil {
		return src, err
	}
	src.Credentials = creds
	return src, nil
}

// sourceCredentials reads the credentials a scheme takes from a Secret's
// data. http, https and oci take username and password, or token; s3 takes
// accessKeyID and secretAccessKey, and optionally sessionToken. Other keys
// are ignored (a Secret may serve other tools too). A key the scheme needs
// that is missing is "unavailable" (the Secret may still be completed); keys
// of another scheme, or both basic and token, are "invalid".
func sourceCredentials(scheme, secret string, data map[string][]byte) (*fetch.Credentials, error) {
	has := func(k string) bool { _, ok := data[k]; return ok }
	val := func(k string) string { return string(data[k]) }
	unavailable := func(format string, a ...any) error {
		return &errSourceCredentials{otav1.ReasonSourceCredentialsUnavailable, fmt.Errorf("source credentials Secret %s: "+format, append([]any{secret}, a...)...)}
	}
	invalid := func(format string, a ...any) error {
		return &errSourceCredentials{otav1.ReasonSourceCredentialsInvalid, fmt.Errorf("source credentials Secret %s: "+format, append([]any{secret}, a...)...)}
	}
	basic := has(otav1.SourceSecretUsername) || has(otav1.SourceSecretPassword)
	token := has(otav1.SourceSecretToken)
	s3keys := has(otav1.SourceSecretAccessKeyID) || has(otav1.SourceSecretSecretAccessKey) || has(otav1.SourceSecretSessionToken)
	nonEmpty := func(keys ...string) error {
		for _, k := range keys {
			if has(k) && len(data[k]) == 0 {
				return invalid("key %q is empty", k)
			}
		}
		return nil
	}

	if scheme == fetch.SchemeS3 {
		switch {
		case basic || token:
			return nil, invalid("an s3:// source takes keys %q and %q (optionally %q), not %q, %q or %q",
				otav1.SourceSecretAccessKeyID, otav1.SourceSecretSecretAccessKey, otav1.SourceSecretSessionToken,
				otav1.SourceSecretUsername, otav1.SourceSecretPassword, otav1.SourceSecretToken)
		case !has(otav1.SourceSecretAccessKeyID):
			return nil, unavailable("has no key %q (an s3:// source needs %q and %q)", otav1.SourceSecretAccessKeyID, otav1.SourceSecretAccessKeyID, otav1.SourceSecretSecretAccessKey)
		case !has(otav1.SourceSecretSecretAccessKey):
			return nil, unavailable("has no key %q (an s3:// source needs %q and %q)", otav1.SourceSecretSecretAccessKey, otav1.SourceSecretAccessKeyID, otav1.SourceSecretSecretAccessKey)
		}
		if err := nonEmpty(otav1.SourceSecretAccessKeyID, otav1.SourceSecretSecretAccessKey, otav1.SourceSecretSessionToken); err != nil {
			return nil, err
		}
		return &fetch.Credentials{
			AccessKeyID:     val(otav1.SourceSecretAccessKeyID),
			SecretAccessKey: val(otav1.SourceSecretSecretAccessKey),
			SessionToken:    val(otav1.SourceSecretSessionToken),
		}, nil
	}

	switch {
	case s3keys:
		return nil, invalid("a %s:// source takes keys %q and %q, or %q, not S3 keys", scheme,
			otav1.SourceSecretUsername, otav1.SourceSecretPassword, otav1.SourceSecretToken)
	case basic && token:
		return nil, invalid("holds both %q/%q and %q; keep one kind of credentials",
			otav1.SourceSecretUsername, otav1.SourceSecretPassword, otav1.SourceSecretToken)
	case token:
		if err := nonEmpty(otav1.SourceSecretToken); err != nil {
			return nil, err
		}
		return &fetch.Credentials{Token: val(otav1.SourceSecretToken)}, nil
	case !basic:
		return nil, unavailable("has none of the keys %q and %q, or %q", otav1.SourceSecretUsername, otav1.SourceSecretPassword, otav1.SourceSecretToken)
	case !has(otav1.SourceSecretUsername):
		return nil, unavailable("has %q but no key %q", otav1.SourceSecretPassword, otav1.SourceSecretUsername)
	case !has(otav1.SourceSecretPassword):
		return nil, unavailable("has %q but no key %q", otav1.SourceSecretUsername, otav1.SourceSecretPassword)
	}
	if err := nonEmpty(otav1.SourceSecretUsername, otav1.SourceSecretPassword); err != nil {
		return nil, err
	}
	return &fetch.Credentials{Username: val(otav1.SourceSecretUsername), Password: val(otav1.SourceSecretPassword)}, nil
}
