package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// showProgress renders progress until ctx ends: tty redraws one table in
// place every second, plain prints one line every 5 s, none prints nothing.
func (s *sim) showProgress(ctx context.Context, w io.Writer, done <-chan struct{}) {
	var every time.Duration
	switch s.opts.progress {
	case "tty":
		every = time.Second
	case "plain":
		every = 5 * time.Second
	default:
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	lines := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
		sum := s.summarize(false)
		late := lateNote(s.sched.takeLag())
		elapsed := time.Since(s.started)
		if s.opts.progress == "plain" {
			line := oneLine(sum)
			if late != "" {
				line += " " + late
			}
			fmt.Fprintf(w, "%s %s\n", elapsed.Round(time.Second), line)
			continue
		}
		var b bytes.Buffer
		writeTable(&b, sum, elapsed)
		if late != "" {
			fmt.Fprintln(&b, late)
		}
		if lines > 0 {
			fmt.Fprintf(w, "\x1b[%dA", lines) // back to the table's first line
		}
		out := strings.ReplaceAll(b.String(), "\n", "\x1b[K\n") // clear leftovers
		fmt.Fprint(w, out+"\x1b[J")
		lines = strings.Count(b.String(), "\n")
	}
}

func oneLine(s Summary) string {
	var b bytes.Buffer
	writeTable(&b, s, 0)
	fields := strings.Fields(strings.ReplaceAll(b.String(), "\n", " | "))
	return strings.Join(fields, " ")
}

// lateNote says when due steps waited a second or more for a free worker
// since the last line: the fleet runs behind its poll interval (too small
// a --concurrency, or a saturated CPU).
func lateNote(lag time.Duration) string {
	if lag < time.Second {
		return ""
	}
	return fmt.Sprintf("steps late by up to %s", lag.Round(time.Second))
}
