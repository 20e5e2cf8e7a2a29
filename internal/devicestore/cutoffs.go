package devicestore

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// EncodeCutoffs is how stores keep RolloutState.Cutoffs: a JSON array of
// decimal strings (JSON numbers lose uint64 precision in most readers),
// "null" for none.
func EncodeCutoffs(c []uint64) (string, error) {
	if c == nil {
		return "null", nil
	}
	s := make([]string, len(c))
	for i, v := range c {
		s[i] = strconv.FormatUint(v, 10)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode cutoffs: %w", err)
	}
	return string(b), nil
}

// DecodeCutoffs reverses EncodeCutoffs.
func DecodeCutoffs(s string) ([]uint64, error) {
	var strs []string
	if err := json.Unmarshal([]byte(s), &strs); err != nil {
		return nil, fmt.Errorf("decode cutoffs: %w", err)
	}
	if strs == nil {
		return nil, nil
	}
	out := make([]uint64, len(strs))
	for i, v := range strs {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("decode cutoffs: %w", err)
		}
		out[i] = n
	}
	return out, nil
}
