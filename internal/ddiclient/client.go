// Package ddiclient is a hawkBit DDI v1 client that behaves as
// rauc-hawkbit-updater does (src/hawkbit-client.c): it polls the base
// resource, answers configData, installs one deployment at a time after
// checking the artifact's SHA-1, acknowledges cancels, and reports
// closed/success or closed/failure. Tests and benchmarks use it to run
// DDI devices beside native ones; it knows only the wire format.
package ddiclient

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client is one DDI controller.
type Client struct {
	// Base is the server URL; Tenant and ID make the controller's path.
	Base, Tenant, ID string
	// Auth is the Authorization header ("TargetToken …" or "GatewayToken …").
	Auth string
	// Version is the running version, sent as the "version" attribute.
	Version string
	// Attributes are sent besides the version.
	Attributes map[string]string
	// Fail makes installs fail with this detail ("" succeeds).
	Fail string
	HTTP *http.Client
}

// Root is the part of the base resource the client reads.
type Root struct {
	Config struct {
		Polling struct {
			Sleep string `json:"sleep"`
		} `json:"polling"`
	} `json:"config"`
	Links map[string]struct {
		Href string `json:"href"`
	} `json:"_links"`
}

// Sleep is config.polling.sleep.
func (r Root) Sleep() (time.Duration, error) {
	t, err := time.Parse("15:04:05", r.Config.Polling.Sleep)
	if err != nil {
		return 0, fmt.Errorf("polling.sleep %q: %w", r.Config.Polling.Sleep, err)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second, nil
}

// Href is a link's target, "" when absent.
func (r Root) Href(name string) string { return r.Links[name].Href }

type deployment struct {
	ID         string `json:"id"`
	Deployment struct {
		Download, Update string
		Chunks           []struct {
			Version   string `json:"version"`
			Artifacts []struct {
				Filename string `json:"filename"`
				Size     int64  `json:"size"`
				Hashes   struct {
					SHA1 string `json:"sha1"`
				} `json:"hashes"`
				Links map[string]struct {
					Href string `json:"href"`
				} `json:"_links"`
			} `json:"artifacts"`
		} `json:"chunks"`
	} `json:"deployment"`
}

// StatusError is an answer other than 200 (the client accepts only 200,
// as rauc-hawkbit-updater).
type StatusError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.URL, e.Status, e.Body)
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) url() string {
	return strings.TrimRight(c.Base, "/") + "/" + c.Tenant + "/controller/v1/" + c.ID
}

func (c *Client) do(ctx context.Context, method, url string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", c.Auth)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http().Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return &StatusError{Method: method, URL: url, Status: res.StatusCode, Body: string(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, url, err)
		}
	}
	return nil
}

// Poll GETs the base resource.
func (c *Client) Poll(ctx context.Context) (Root, error) {
	var r Root
	err := c.do(ctx, http.MethodGet, c.url(), nil, &r)
	return r, err
}

func status(execution, finished, detail string) map[string]any {
	s := map[string]any{"execution": execution, "result": map[string]any{"finished": finished}}
	if detail != "" {
		s["details"] = []string{detail}
	}
	return s
}

// PutAttributes sends the version and attributes (configData).
func (c *Client) PutAttributes(ctx context.Context, href string) error {
	data := map[string]string{"version": c.Version}
	for k, v := range c.Attributes {
		data[k] = v
	}
	body := map[string]any{"time": time.Now().UTC().Format("20060102T150405"), "status": status("closed", "success", ""), "data": data}
	return c.do(ctx, http.MethodPut, href, body, nil)
}

func (c *Client) feedback(ctx context.Context, href, id, execution, finished, detail string) error {
	body := map[string]any{"id": id, "time": time.Now().UTC().Format("20060102T150405"), "status": status(execution, finished, detail)}
	return c.do(ctx, http.MethodPost, href+"/feedback", body, nil)
}

// Step is what one Cycle did.
type Step string

// Steps.
const (
	Idle       Step = "idle"
	Identified Step = "identified"
	Installed  Step = "installed"
	Failed     Step = "failed"
	Canceled   Step = "canceled"
)

// Cycle polls once and acts on what the base resource links, as
// rauc-hawkbit-updater does in one poll: configData, then a deployment
// (download, SHA-1 check, install, closed feedback), then a cancel.
func (c *Client) Cycle(ctx context.Context) (Step, Root, error) {
	root, err := c.Poll(ctx)
	if err != nil {
		return Idle, root, err
	}
	if href := root.Href("configData"); href != "" {
		return Identified, root, c.PutAttributes(ctx, href)
	}
	if href := root.Href("deploymentBase"); href != "" {
		step, err := c.install(ctx, href)
		return step, root, err
	}
	if href := root.Href("cancelAction"); href != "" {
		var ca struct {
			ID           string `json:"id"`
			CancelAction struct {
				StopID string `json:"stopId"`
			} `json:"cancelAction"`
		}
		if err := c.do(ctx, http.MethodGet, href, nil, &ca); err != nil {
			return Idle, root, err
		}
		return Canceled, root, c.feedback(ctx, href, ca.CancelAction.StopID, "closed", "success", "Action canceled.")
	}
	return Idle, root, nil
}

// install runs one deployment.
func (c *Client) install(ctx context.Context, href string) (Step, error) {
	var d deployment
	if err := c.do(ctx, http.MethodGet, href, nil, &d); err != nil {
		return Idle, err
	}
	if len(d.Deployment.Chunks) != 1 || len(d.Deployment.Chunks[0].Artifacts) != 1 {
		return Failed, c.feedback(ctx, href, d.ID, "closed", "failure", "Deployment must have exactly one chunk with one artifact.")
	}
	ch := d.Deployment.Chunks[0]
	a := ch.Artifacts[0]
	dl := a.Links["download"].Href
	if dl == "" {
		dl = a.Links["download-http"].Href
	}
	sum, n, err := c.download(ctx, dl)
	if err != nil {
		return Idle, err
	}
	if n != a.Size || sum != a.Hashes.SHA1 {
		return Failed, c.feedback(ctx, href, d.ID, "closed", "failure", fmt.Sprintf("Checksum mismatch: got %s (%d bytes)", sum, n))
	}
	if err := c.feedback(ctx, href, d.ID, "proceeding", "none", "File checksum OK."); err != nil {
		return Idle, err
	}
	if c.Fail != "" {
		return Failed, c.feedback(ctx, href, d.ID, "closed", "failure", c.Fail)
	}
	if err := c.feedback(ctx, href, d.ID, "closed", "success", "Software bundle installed successfully."); err != nil {
		return Idle, err
	}
	c.Version = ch.Version
	return Installed, nil
}

// download GETs the artifact and returns its SHA-1 and size.
func (c *Client) download(ctx context.Context, url string) (string, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Authorization", c.Auth)
	req.Header.Set("Accept", "application/octet-stream")
	res, err := c.http().Do(req)
	if err != nil {
		return "", 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return "", 0, &StatusError{Method: http.MethodGet, URL: url, Status: res.StatusCode, Body: string(b)}
	}
	h := sha1.New()
	n, err := io.Copy(h, res.Body)
	if err != nil {
		return "", 0, fmt.Errorf("download %s: %w", url, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
