package main

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strconv"
	"sync"
)

// responseCounts counts what the fleet's HTTP transport saw: answers by
// status code, those carrying Retry-After, and requests that got no answer
// (connection refused or reset: a replica down; or none within the agent's
// request timeout: a server overloaded). A caller checking how the
// servers behaved in an outage (503 with Retry-After while the database is
// down) reads them from the summary.
type responseCounts struct {
	mu         sync.Mutex
	byCode     map[int]int
	retryAfter map[int]int
	errors     int
	// fleet is the fleet's context (set before the first request): once
	// it ended (--duration), failed requests are not counted.
	fleet context.Context
}

func newResponseCounts() *responseCounts {
	return &responseCounts{byCode: map[int]int{}, retryAfter: map[int]int{}}
}

// counting wraps next so every round trip is counted.
func (c *responseCounts) counting(next http.RoundTripper) http.RoundTripper {
	return rtFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		c.mu.Lock()
		defer c.mu.Unlock()
		if err != nil {
			// A request canceled (a device gone, the fleet stopping) is not
			// the server's doing; one the agent's request timeout ended got
			// no answer.
			stopped := errors.Is(r.Context().Err(), context.Canceled) || (c.fleet != nil && c.fleet.Err() != nil)
			if !stopped {
				c.errors++
			}
			return resp, err
		}
		c.byCode[resp.StatusCode]++
		if resp.Header.Get("Retry-After") != "" {
			c.retryAfter[resp.StatusCode]++
		}
		return resp, nil
	})
}

// snapshot returns the counts keyed by status code as text (JSON keys).
func (c *responseCounts) snapshot() (byCode, retryAfter map[string]int, errors int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	conv := func(m map[int]int) map[string]int {
		out := make(map[string]int, len(m))
		for k, v := range maps.All(m) {
			out[strconv.Itoa(k)] = v
		}
		return out
	}
	return conv(c.byCode), conv(c.retryAfter), c.errors
}
