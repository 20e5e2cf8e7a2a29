// Package render turns Rollouts, device summaries and device decisions into
// the text `kubectl ota` prints. Everything here is pure: the caller passes
// the objects and the current time, and gets text back.
package render
