package rollout

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParsePercent parses "95%" or "99.5%" into a fraction (0.95). The API
// validates the format; this is the one place that gives it meaning.
func ParsePercent(s string) (float64, error) {
	num, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	if !ok {
		return 0, fmt.Errorf("percentage %q: missing %%", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
		return 0, fmt.Errorf("percentage %q: want a number from 0 to 100", s)
	}
	return v / 100, nil
}

// need is how many of n devices a fraction asks for, rounded up so that 95%
// of 10 devices means 10, never 9.
func need(fraction float64, n int64) int64 {
	// Subtract a hair so 0.3*10 (2.9999999999999996 or 3.0000000000000004)
	// gives 3, not 4.
	return int64(math.Ceil(fraction*float64(n) - 1e-9))
}
