package devindex

import "unsafe"

// arena holds immutable byte strings (device IDs, public keys, unshared
// label sets) in large chunks: a million small strings would otherwise be
// a million heap objects for the garbage collector to track. Bytes are
// only ever appended, never changed, so strings may point into a chunk.
type arena struct {
	chunks [][]byte
}

const (
	chunkBits = 20 // 1 MiB chunks
	chunkSize = 1 << chunkBits
	// maxItem bounds one stored string; callers validate far below it.
	maxItem = 1<<16 - 1
)

// ref locates a stored string: chunk index in the high bits, offset in
// the low chunkBits.
type ref uint32

func (a *arena) add(b []byte) ref {
	if len(b) > maxItem {
		panic("devindex: arena item too large")
	}
	n := len(a.chunks)
	if n == 0 || len(a.chunks[n-1])+len(b) > chunkSize {
		a.chunks = append(a.chunks, make([]byte, 0, chunkSize))
		n++
	}
	c := a.chunks[n-1]
	off := len(c)
	a.chunks[n-1] = append(c, b...)
	return ref(uint32(n-1)<<chunkBits | uint32(off))
}

// bytes returns the stored string at r; the result must not be modified.
func (a *arena) bytes(r ref, n int) []byte {
	c := a.chunks[r>>chunkBits]
	off := int(r & (chunkSize - 1))
	return c[off : off+n : off+n]
}

// str returns the stored string at r without copying.
func (a *arena) str(r ref, n int) string {
	if n == 0 {
		return ""
	}
	b := a.bytes(r, n)
	return unsafe.String(&b[0], n)
}

// size is the memory the arena holds.
func (a *arena) size() int64 { return int64(len(a.chunks)) * chunkSize }

// interner maps strings that many devices share (versions, KEM names) to
// small numbers.
type interner struct {
	ids  map[string]uint32
	strs []string
}

func (in *interner) id(s string) uint32 {
	if in.ids == nil {
		in.ids = map[string]uint32{}
	}
	if i, ok := in.ids[s]; ok {
		return i
	}
	i := uint32(len(in.strs))
	in.ids[s] = i
	in.strs = append(in.strs, s)
	return i
}
