package main

import (
	"maps"
	"net/http"
	"strconv"
	"sync"
)

// responseCounts counts what the fleet's HTTP transport saw: answers by
// status code, those carrying Retry-After, and requests that got no answer
// (connection refused or reset: a replica down). A caller checking how the
// servers behaved in an outage (503 with Retry-After while the database is
// down) reads them from the summary.
type responseCounts struct {
	mu         sync.Mutex
	byCode     map[int]int
	retryAfter map[int]int
	errors     int
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
			// A canceled request (the fleet stopping) is not the server's doing.
			if r.Context().Err() == nil {
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
