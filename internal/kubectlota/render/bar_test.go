package render

import "testing"

func TestBar(t *testing.T) {
	for _, tc := range []struct {
		name  string
		width int
		total int64
		segs  []Segment
		want  string
	}{
		{"empty wave", 10, 0, nil, "[..........]"},
		{"nothing yet", 10, 40, nil, "[..........]"},
		{"all succeeded", 10, 40, []Segment{{40, '#'}}, "[##########]"},
		{"half", 10, 40, []Segment{{20, '#'}}, "[#####.....]"},
		{"rounding by largest remainder", 10, 3, []Segment{{1, '#'}, {1, 'x'}}, "[####xxx...]"},
		{"a single failure among many still shows", 10, 1000, []Segment{{999, '#'}, {1, 'x'}}, "[#########x]"},
		{"every kind", 20, 100, []Segment{{50, '#'}, {5, 'x'}, {20, '>'}, {5, '-'}, {10, '~'}}, "[##########x>>>>-~~..]"},
		{"counts above total widen the total", 10, 5, []Segment{{10, '#'}}, "[##########]"},
		{"zero width", 0, 5, []Segment{{5, '#'}}, "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Bar(tc.width, tc.total, '.', tc.segs...)
			if got != tc.want {
				t.Errorf("Bar = %q, want %q", got, tc.want)
			}
			if n := len(got) - 2; n != tc.width {
				t.Errorf("bar is %d wide, want %d", n, tc.width)
			}
		})
	}
}
