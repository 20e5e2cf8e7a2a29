package agent

import (
	"math/rand/v2"
	"time"
)

// backoffState counts consecutive failures.
type backoffState struct {
	cfg      Backoff
	failures int
}

// next returns the delay after one more failure: exponential with equal
// jitter, never below the server's Retry-After.
func (b *backoffState) next(retryAfter time.Duration) time.Duration {
	d := b.cfg.Initial
	for i := 0; i < b.failures && d < b.cfg.Max; i++ {
		d *= 2
	}
	d = min(d, b.cfg.Max)
	b.failures++
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	return max(d, retryAfter)
}

func (b *backoffState) reset() { b.failures = 0 }

// jitter spreads d by ± frac.
func jitter(d time.Duration, frac float64) time.Duration {
	if frac <= 0 || d <= 0 {
		return d
	}
	f := 1 + frac*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
