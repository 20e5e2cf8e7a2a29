package main

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// loadSpec is a closed-loop load: Workers goroutines, each on its own
// keep-alive connection, send requests back to back for Warmup+Duration;
// only requests started after the warm-up count.
type loadSpec struct {
	Workers  int
	Warmup   time.Duration
	Duration time.Duration
	// Build makes worker w's next request (rng is the worker's own).
	Build func(w int, rng *rand.Rand) (*http.Request, error)
	// Pace, when > 0, spaces each worker's request starts (open-loop-ish
	// arrival at Workers/Pace per second).
	Pace time.Duration
}

type loadResult struct {
	Requests int             `json:"requests"`
	Errors   int             `json:"errors"`
	Statuses map[int]int     `json:"statuses"`
	RPS      float64         `json:"rps"`
	Bytes    int64           `json:"bytes"`
	P50      time.Duration   `json:"p50"`
	P99      time.Duration   `json:"p99"`
	Max      time.Duration   `json:"max"`
	Samples  []time.Duration `json:"-"`
}

func newClient(workers int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        workers,
		MaxIdleConnsPerHost: workers,
		MaxConnsPerHost:     workers,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}, Timeout: 30 * time.Second}
}

func runLoad(ctx context.Context, client *http.Client, spec loadSpec) loadResult {
	start := time.Now()
	measureFrom := start.Add(spec.Warmup)
	end := measureFrom.Add(spec.Duration)
	type part struct {
		samples  []time.Duration
		errors   int
		bytes    int64
		statuses map[int]int
	}
	parts := make([]part, spec.Workers)
	var wg sync.WaitGroup
	for w := range spec.Workers {
		wg.Go(func() {
			p := &parts[w]
			p.statuses = map[int]int{}
			rng := rand.New(rand.NewPCG(uint64(w)+1, uint64(start.UnixNano())))
			next := time.Now()
			if spec.Pace > 0 { // spread the workers over one period
				next = next.Add(time.Duration(rng.Int64N(int64(spec.Pace))))
			}
			for ctx.Err() == nil {
				if spec.Pace > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(spec.Pace)
				}
				t0 := time.Now()
				if t0.After(end) {
					return
				}
				req, err := spec.Build(w, rng)
				if err != nil {
					p.errors++
					continue
				}
				resp, err := client.Do(req.WithContext(ctx))
				var n int64
				if err == nil {
					n, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				el := time.Since(t0)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					p.errors++
					continue
				}
				p.statuses[resp.StatusCode]++
				p.bytes += n
				p.samples = append(p.samples, el)
			}
		})
	}
	wg.Wait()
	var r loadResult
	r.Statuses = map[int]int{}
	for _, p := range parts {
		r.Samples = append(r.Samples, p.samples...)
		r.Errors += p.errors
		r.Bytes += p.bytes
		for k, v := range p.statuses {
			r.Statuses[k] += v
		}
	}
	slices.Sort(r.Samples)
	r.Requests = len(r.Samples)
	r.RPS = float64(r.Requests) / spec.Duration.Seconds()
	if n := len(r.Samples); n > 0 {
		r.P50 = r.Samples[n/2]
		r.P99 = r.Samples[min(n-1, n*99/100)]
		r.Max = r.Samples[n-1]
	}
	r.Samples = nil
	return r
}
