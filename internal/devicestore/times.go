package devicestore

import "time"

// UnixNanos is how stores keep times: unix nanoseconds, the zero time as 0.
func UnixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromUnixNanos reverses UnixNanos (in UTC).
func FromUnixNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
