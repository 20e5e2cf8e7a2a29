package swupdatetest

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"

	"pgregory.net/rapid"
)

// readCPIO parses a crc-format archive by the rules SWUpdate applies
// (core/cpio_utils.c): 110-byte ASCII headers with magic 070702, name and
// data each padded to 4 bytes, the check field equal to the data's byte
// sum, a TRAILER!!! entry; plus GNU cpio's 512-byte final block.
func readCPIO(b []byte) ([]cpioEntry, error) {
	if len(b)%cpioBlock != 0 {
		return nil, fmt.Errorf("archive of %d bytes is not a multiple of %d", len(b), cpioBlock)
	}
	var out []cpioEntry
	off := 0
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) {
			return nil, fmt.Errorf("header at %d: truncated", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != cpioMagicCRC {
			return nil, fmt.Errorf("header at %d: magic %q", off, h[:6])
		}
		field := func(i int) (int, error) {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			return int(v), err
		}
		var f [13]int
		for i := range f {
			v, err := field(i)
			if err != nil {
				return nil, fmt.Errorf("header at %d, field %d: %w", off, i, err)
			}
			f[i] = v
		}
		mode, nlink, size, namesize, check := f[1], f[4], f[6], f[11], f[12]
		nameEnd := off + 110 + namesize
		if namesize < 2 || nameEnd > len(b) || b[nameEnd-1] != 0 {
			return nil, fmt.Errorf("header at %d: bad name size %d", off, namesize)
		}
		name := string(b[off+110 : nameEnd-1])
		dataStart := align(nameEnd)
		if dataStart+size > len(b) {
			return nil, fmt.Errorf("%s: data truncated", name)
		}
		data := b[dataStart : dataStart+size]
		if uint32(check) != cpioSum(data) {
			return nil, fmt.Errorf("%s: check %#x, data sums to %#x", name, check, cpioSum(data))
		}
		if nlink != 1 {
			return nil, fmt.Errorf("%s: nlink %d", name, nlink)
		}
		off = align(dataStart + size)
		if name == cpioTrailer {
			if size != 0 {
				return nil, fmt.Errorf("trailer with %d bytes", size)
			}
			if bytes.ContainsFunc(b[off:], func(r rune) bool { return r != 0 }) {
				return nil, fmt.Errorf("non-zero bytes after the trailer")
			}
			return out, nil
		}
		if mode != cpioModeReg {
			return nil, fmt.Errorf("%s: mode %o", name, mode)
		}
		out = append(out, cpioEntry{name: name, data: bytes.Clone(data)})
	}
}

func TestWriteCPIORoundTrip(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(0, 5).Draw(rt, "entries")
		entries := make([]cpioEntry, n)
		for i := range entries {
			entries[i] = cpioEntry{
				name: rapid.StringMatching(`[A-Za-z0-9._-]{1,40}`).Filter(func(s string) bool { return s != cpioTrailer }).Draw(rt, "name"),
				data: rapid.SliceOfN(rapid.Byte(), 0, 3000).Draw(rt, "data"),
			}
		}
		var b bytes.Buffer
		if err := writeCPIO(&b, entries); err != nil {
			rt.Fatal(err)
		}
		got, err := readCPIO(b.Bytes())
		if err != nil {
			rt.Fatal(err)
		}
		if len(got) != len(entries) {
			rt.Fatalf("%d entries back, wrote %d", len(got), len(entries))
		}
		for i := range got {
			if got[i].name != entries[i].name || !bytes.Equal(got[i].data, entries[i].data) {
				rt.Fatalf("entry %d: %q (%d bytes), wrote %q (%d bytes)", i, got[i].name, len(got[i].data), entries[i].name, len(entries[i].data))
			}
		}
	})
}

func TestCPIOSumWraps(t *testing.T) {
	t.Parallel()
	// 24 MiB of 0xff sum past 2^32: the check field keeps the low 32 bits.
	data := bytes.Repeat([]byte{0xff}, 1<<24+1<<23)
	want := uint32((uint64(len(data)) * 0xff) % (1 << 32))
	if got := cpioSum(data); got != want {
		t.Fatalf("cpioSum = %#x, want %#x", got, want)
	}
}

func TestWriteCPIORejectsReservedName(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := writeCPIO(&b, []cpioEntry{{name: cpioTrailer}}); err == nil {
		t.Fatal("writeCPIO accepted an entry named TRAILER!!!")
	}
	if err := writeCPIO(&b, []cpioEntry{{name: ""}}); err == nil {
		t.Fatal("writeCPIO accepted an empty name")
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain":      `"plain"`,
		`a"b\c`:      `"a\"b\\c"`,
		"line\nnext": `"line\x0anext"`,
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}
