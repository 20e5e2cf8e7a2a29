package render

import "strings"

// Segment is one share of a progress bar: a count drawn with a mark.
type Segment struct {
	Count int64
	Mark  byte
}

// Bar draws segments out of total as width characters between brackets;
// what the segments leave of total is drawn with rest. Shares are rounded
// by largest remainder so the bar is always width long, and any non-zero
// segment gets at least one character, so a single failure among
// thousands of devices still shows.
func Bar(width int, total int64, rest byte, segs ...Segment) string {
	all := append([]Segment(nil), segs...)
	var sum int64
	for _, s := range all {
		sum += max(0, s.Count)
	}
	if total < sum {
		total = sum
	}
	all = append(all, Segment{Count: total - sum, Mark: rest})
	cells := make([]int, len(all))
	var b strings.Builder
	b.WriteByte('[')
	if total <= 0 || width <= 0 {
		b.WriteString(strings.Repeat(string(rest), max(0, width)))
		b.WriteByte(']')
		return b.String()
	}
	used := 0
	rems := make([]int64, len(all))
	for i, s := range all {
		c := max(0, s.Count)
		cells[i] = int(c * int64(width) / total)
		rems[i] = c * int64(width) % total
		used += cells[i]
	}
	for ; used < width; used++ {
		best := -1
		for i := range all {
			if best < 0 || rems[i] > rems[best] {
				best = i
			}
		}
		cells[best]++
		rems[best] = -1
	}
	for i, s := range all {
		if s.Count <= 0 || cells[i] > 0 {
			continue
		}
		widest := 0
		for j := range cells {
			if cells[j] > cells[widest] {
				widest = j
			}
		}
		if cells[widest] <= 1 {
			break // more segments than characters: nothing left to lend
		}
		cells[widest]--
		cells[i]++
	}
	for i, s := range all {
		b.WriteString(strings.Repeat(string(s.Mark), cells[i]))
	}
	b.WriteByte(']')
	return b.String()
}
