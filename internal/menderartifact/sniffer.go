package menderartifact

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// DefaultSniffLimit is how many leading bytes a Sniffer keeps by default;
// the header of an artifact comes before its payloads.
const DefaultSniffLimit = 32 << 20

// Sniffer is an io.Writer that keeps the first bytes of an artifact streamed
// through it, up to a limit, so the header can be read from the same single
// pass that hashes or uploads the image. Write never fails: past the limit
// it drops bytes, so it can sit in an io.MultiWriter without breaking the
// stream. A Sniffer is not safe for concurrent use.
type Sniffer struct {
	limit   int
	lim     limits
	kept    []byte
	written int64
}

// NewSniffer returns a Sniffer keeping at most limit bytes;
// DefaultSniffLimit when limit is not positive.
func NewSniffer(limit int) *Sniffer {
	if limit <= 0 {
		limit = DefaultSniffLimit
	}
	return &Sniffer{limit: limit, lim: defaultLimits}
}

// Write keeps what fits under the limit and reports all of p as written.
func (s *Sniffer) Write(p []byte) (int, error) {
	s.written += int64(len(p))
	if room := s.limit - len(s.kept); room > 0 {
		s.kept = append(s.kept, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Written is the number of bytes written so far, kept or not.
func (s *Sniffer) Written() int64 { return s.written }

// Header parses the kept bytes like Parse. When the header does not end
// within them because the limit cut the stream, the error says so.
func (s *Sniffer) Header() (*Header, error) {
	h, err := parse(bytes.NewReader(s.kept), s.lim)
	if err != nil && s.written > int64(len(s.kept)) && errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("%w: the artifact header does not end within the first %d bytes, the most that are kept to read it", ErrInvalid, s.limit)
	}
	return h, err
}
