package otaserver

import (
	"fmt"
	"testing"
)

func TestGrantCache(t *testing.T) {
	g := newGrantCache(4)
	if g.has("d1", "b1") {
		t.Fatal("empty cache has a grant")
	}
	g.add("d1", "b1")
	for _, c := range []struct {
		dev, blob string
		want      bool
	}{
		{"d1", "b1", true},
		{"d2", "b1", false}, // another device, same blob
		{"d1", "b2", false}, // same device, another blob
		{"d1b", "1", false}, // the separator keeps "d1"+"b1" apart from "d1b"+"1"
	} {
		if got := g.has(c.dev, c.blob); got != c.want {
			t.Errorf("has(%s, %s) = %v, want %v", c.dev, c.blob, got, c.want)
		}
	}
	for i := range 10 {
		g.add(fmt.Sprint("d", i), "b")
	}
	if n := len(g.m); n > 4 {
		t.Fatalf("cache holds %d grants, bound is 4", n)
	}
	if !g.has("d9", "b") {
		t.Fatal("latest grant forgotten")
	}
}
