package fetch

import (
	"context"
	"fmt"
	"net/http"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 defaults, as internal/blobstore/blobopen has them.
const (
	defaultS3Region   = "us-east-1"
	defaultS3Endpoint = "s3.amazonaws.com"
)

// s3AccessCodes are S3 error codes that mean the credentials were refused.
var s3AccessCodes = map[string]bool{
	"AccessDenied":          true,
	"AllAccessDisabled":     true,
	"InvalidAccessKeyId":    true,
	"InvalidToken":          true,
	"ExpiredToken":          true,
	"SignatureDoesNotMatch": true,
	"InvalidSecurity":       true,
}

// openS3 starts a GET of an object. The first response (minio-go's Stat on
// the object reader) gives the size, which is checked before the body is
// read.
func (f *Fetcher) openS3(ctx context.Context, loc *Location, src Source) (*Image, error) {
	o := src.S3
	endpoint := o.Endpoint
	if endpoint == "" {
		endpoint = defaultS3Endpoint
		if o.Region != "" {
			endpoint = "s3." + o.Region + ".amazonaws.com"
		}
	}
	region := o.Region
	if region == "" {
		region = defaultS3Region
	}
	name := fmt.Sprintf("s3://%s/%s at %s", loc.Bucket, loc.Key, endpoint)

	creds := credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	if c := src.Credentials; c != nil {
		creds = credentials.NewStaticV4(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
	}
	client, err := minio.New(endpoint, &minio.Options{
		Creds:     creds,
		Secure:    !o.Insecure,
		Region:    region,
		Transport: f.transport,
		// The controller retries with backoff; minio-go's own retries
		// would only delay a clear answer.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w: endpoint: %v", name, ErrInvalidURL, err)
	}
	reqCtx, cancel := context.WithCancelCause(ctx)
	obj, err := client.GetObject(reqCtx, loc.Bucket, loc.Key, minio.GetObjectOptions{})
	if err != nil {
		cancel(nil)
		return nil, s3Error(name, err)
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		cancel(nil)
		return nil, s3Error(name, err)
	}
	if err := f.checkSize(name, "object size", info.Size, src.ExpectedSize); err != nil {
		obj.Close()
		cancel(nil)
		return nil, err
	}
	return &Image{Body: f.capBody(ctx, reqCtx, cancel, obj, name, src), Size: info.Size}, nil
}

// s3Error classifies a minio-go error: refused credentials, a missing
// object (retried: it may not be uploaded yet), or a transport error.
func s3Error(name string, err error) error {
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || s3AccessCodes[resp.Code]:
		return fmt.Errorf("GET %s: %w: %s (%s)", name, ErrUnauthorized, resp.Code, resp.Message)
	case resp.Code != "":
		return fmt.Errorf("GET %s: %s: %s (HTTP %d)", name, resp.Code, resp.Message, resp.StatusCode)
	}
	return fmt.Errorf("GET %s: %w", name, unwrapURLError(err))
}
