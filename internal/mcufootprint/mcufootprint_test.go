package mcufootprint

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An excerpt of an arm-none-eabi-ld map, shortened, with the cases the
// parser must get right: discarded sections before the memory map, names
// too long for their column (the address and size on the next line),
// symbol and assignment lines, linker script patterns, *fill*, COMMON, a
// .data with a load address, and debug sections.
const excerpt = `Archive member included to satisfy reference by file (symbol)

/b/libotaflow.a(envelope.o)
                              /b/elf/t/main.o (ota_env_init)

Discarded input sections

 .text          0x00000000      0x999 /b/libotaflow.a(envelope.o)
 .rodata        0x00000000       0x24 /usr/lib/gcc/arm-none-eabi/12.2.1/thumb/v7e-m/nofp/crtbegin.o

Memory Configuration

Name             Origin             Length             Attributes
CODE             0x00000000         0x00400000         xr
RAM              0x21000000         0x01000000         xrw

Linker script and memory map

LOAD /usr/lib/gcc/arm-none-eabi/12.2.1/thumb/v7e-m/nofp/crti.o
LOAD /b/elf/t/main.o
START GROUP
LOAD /b/libotaflow.a
END GROUP
                0x00040000                        STACK_SIZE = DEFINED (__stack_size__)?__stack_size__:0x40000

.vectors        0x00000000       0x40
 *(.vectors)
 .vectors       0x00000000       0x40 /b/board/startup.o

.text           0x00000040      0x400
 *(.text .text.*)
 .text          0x00000040       0x88 /usr/lib/gcc/arm-none-eabi/12.2.1/thumb/v7e-m/nofp/crtbegin.o
 .text          0x000000c8       0xf0 /usr/lib/gcc/arm-none-eabi/12.2.1/../../../arm-none-eabi/lib/thumb/v7e-m/nofp/rdimon-crt0.o
                0x000000c8                _stack_init
                0x000000d4                _start
 .text.startup.main
                0x000001b8       0x20 /b/elf/t/main.o
                0x000001b8                main
 .text.ota_env_init
                0x000001d8      0x100 /b/libotaflow.a(envelope.o)
                0x000001d8                ota_env_init
 .text.ota_env_feed
                0x000002d8       0x60 /b/libotaflow.a(envelope.o)
 .text.hpke_open
                0x00000338       0x50 /b/libotaflow.a(hpke.o)
 *fill*         0x00000388        0x2 
 .text.mbedtls_mpi_init
                0x0000038a        0xc /b/libmbedcrypto.a(bignum.o)
 .text          0x00000396       0x10 /usr/lib/gcc/arm-none-eabi/12.2.1/../../../arm-none-eabi/lib/thumb/v7e-m/nofp/libc_nano.a(lib_a-memcpy-stub.o)
 .text          0x000003a6       0x20 /usr/lib/gcc/arm-none-eabi/12.2.1/thumb/v7e-m/nofp/libgcc.a(_udivmoddi4.o)
 KEEP(*(.init))
 .init          0x000003c6        0x4 /usr/lib/gcc/arm-none-eabi/12.2.1/thumb/v7e-m/nofp/crti.o
                0x000003c6                _init
 .glue_7        0x000003cc        0x0 linker stubs

.rodata         0x00000440       0x90
 *(.rodata .rodata.*)
 .rodata.ota_env_magic
                0x00000440        0x8 /b/libotaflow.a(envelope.o)
 .rodata.str1.4
                0x00000448       0x28 /b/elf/t/main.o
 .rodata.secp256r1_p
                0x00000470       0x60 /b/libmbedcrypto.a(ecp_curves.o)

.ARM.exidx      0x000004d0        0x8
                0x000004d0                __exidx_start = .
 .ARM.exidx     0x000004d0        0x8 /usr/lib/gcc/arm-none-eabi/12.2.1/thumb/v7e-m/nofp/libgcc.a(_udivmoddi4.o)

.init_array     0x000004d8        0x4
                [!provide]                PROVIDE (__init_array_start = .)
 KEEP(*(SORT_BY_INIT_PRIORITY(.init_array.*) SORT_BY_INIT_PRIORITY(.ctors.*)))
 .init_array    0x000004d8        0x4 /usr/lib/gcc/arm-none-eabi/12.2.1/thumb/v7e-m/nofp/crtbegin.o

.data           0x21000000       0x20 load address 0x000004dc
 .data          0x21000000       0x18 /usr/lib/gcc/arm-none-eabi/12.2.1/../../../arm-none-eabi/lib/thumb/v7e-m/nofp/rdimon-crt0.o
 .data.mbedtls_calloc_func
                0x21000018        0x4 /b/libmbedcrypto.a(platform.o)
 .data.state    0x2100001c        0x4 /b/libm4board.a(board_random.o)

.bss            0x21000020      0x130
                0x21000020                __bss_start__ = .
 .bss.dec       0x21000020      0x100 /b/libotaflow.a(hpke.o)
 .bss           0x21000120       0x1c /usr/lib/gcc/arm-none-eabi/12.2.1/thumb/v7e-m/nofp/crtbegin.o
 COMMON         0x2100013c       0x14 /b/elf/t/main.o
                0x2100013c                scratch
                0x21000150                __bss_end__ = ALIGN (0x8)

.ARM.attributes
                0x00000000       0x2e
 .ARM.attributes
                0x00000000       0x2e /b/elf/t/main.o

.comment        0x00000000       0x26
 .comment       0x00000000       0x26 /b/elf/t/main.o

.debug_info     0x00000000     0x1000
 .debug_info    0x00000000     0x1000 /b/libotaflow.a(envelope.o)
OUTPUT(/b/t.elf elf32-littlearm)
`

func parseExcerpt(t *testing.T) *Report {
	t.Helper()
	r, err := Parse(strings.NewReader(excerpt), "t.map", []string{"libotaflow.a"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sizes(text, rodata, data, bss uint64) Sizes {
	return Sizes{Text: text, Rodata: rodata, Data: data, BSS: bss, Flash: text + rodata + data, RAM: data + bss}
}

func find(t *testing.T, r *Report, name string) Group {
	t.Helper()
	for _, g := range r.Groups {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("no group %q in %+v", name, r.Groups)
	return Group{}
}

func TestParseGroups(t *testing.T) {
	r := parseExcerpt(t)
	var names []string
	for _, g := range r.Groups {
		names = append(names, g.Name)
	}
	if got, want := strings.Join(names, ","), "libotaflow.a,libmbedcrypto.a,libc/libgcc/newlib,other"; got != want {
		t.Fatalf("groups %s, want %s", got, want)
	}

	ota := find(t, r, "libotaflow.a")
	// envelope.o: 0x100 + 0x60 of text, 8 of rodata; the discarded 0x999
	// and the debug section do not count. hpke.o: 0x50 text, 0x100 bss.
	if want := sizes(0x1b0, 0x8, 0, 0x100); ota.Sizes != want {
		t.Errorf("libotaflow.a %+v, want %+v", ota.Sizes, want)
	}
	if len(ota.Objects) != 2 || ota.Objects[0].Name != "envelope.o" || ota.Objects[1].Name != "hpke.o" {
		t.Fatalf("libotaflow.a objects %+v", ota.Objects)
	}
	if want := sizes(0x160, 0x8, 0, 0); ota.Objects[0].Sizes != want {
		t.Errorf("envelope.o %+v, want %+v", ota.Objects[0].Sizes, want)
	}
	if want := sizes(0x50, 0, 0, 0x100); ota.Objects[1].Sizes != want {
		t.Errorf("hpke.o %+v, want %+v", ota.Objects[1].Sizes, want)
	}

	mbed := find(t, r, "libmbedcrypto.a")
	if want := sizes(0xc, 0x60, 0x4, 0); mbed.Sizes != want || len(mbed.Objects) != 0 {
		t.Errorf("libmbedcrypto.a %+v (objects %v), want %+v and no objects", mbed.Sizes, mbed.Objects, want)
	}

	// crtbegin, rdimon-crt0, memcpy, libgcc (text and its .ARM.exidx),
	// crti's .init (code), crtbegin's .init_array (a table).
	rt := find(t, r, "libc/libgcc/newlib")
	if want := sizes(0x88+0xf0+0x10+0x20+0x4, 0x8+0x4, 0x18, 0x1c); rt.Sizes != want {
		t.Errorf("runtime %+v, want %+v", rt.Sizes, want)
	}

	other := find(t, r, "other")
	var objs []string
	for _, o := range other.Objects {
		objs = append(objs, o.Name)
	}
	if got, want := strings.Join(objs, ","), "libm4board.a(board_random.o),main.o,startup.o,(fill)"; got != want {
		t.Errorf("other objects %s, want %s", got, want)
	}
	// main.o: .text.startup.main, a string, COMMON; startup.o: vectors;
	// board_random.o: .data; the fill in .text.
	if want := sizes(0x20+0x2, 0x28+0x40, 0x4, 0x14); other.Sizes != want {
		t.Errorf("other %+v, want %+v", other.Sizes, want)
	}

	// The total is every kept input section: the output sections' sizes.
	if want := sizes(0x388-0x40+0x2+0xc+0x10+0x20+0x4, 0x40+0x90+0x8+0x4, 0x20, 0x130); r.Total != want {
		t.Errorf("total %+v, want %+v", r.Total, want)
	}
	if len(r.Unknown) != 0 {
		t.Errorf("unknown sections %v", r.Unknown)
	}
}

func TestMarkdownAndJSON(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.map")
	if err := os.WriteFile(path, []byte(excerpt), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := ParseFile(path, []string{"libotaflow.a"})
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	if err := rep.Write(&md, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| group | object | text | rodata | data | bss | flash | RAM |",
		"| libotaflow.a | envelope.o | 352 | 8 | 0 | 0 | 360 | 0 |",
		"| libotaflow.a | *all* | **432** | **8** | **0** | **256** | **440** | **256** |",
		"| libmbedcrypto.a |  | 12 | 96 | 4 | 0 | 112 | 4 |",
		"| libc/libgcc/newlib |  | 428 | 12 | 24 | 28 | 464 | 52 |",
		"| **total** |  | **906** | **220** | **32** | **304** | **1158** | **336** |",
	} {
		if !strings.Contains(md.String(), want+"\n") {
			t.Errorf("Markdown lacks %q:\n%s", want, md.String())
		}
	}

	var js bytes.Buffer
	if err := rep.Write(&js, true); err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(js.Bytes(), &r); err != nil {
		t.Fatalf("JSON: %v\n%s", err, js.String())
	}
	if r.Map != path || len(r.Groups) != 4 || r.Total.Flash != 1158 || r.Total.RAM != 336 {
		t.Errorf("JSON report %+v", r)
	}
	if o := r.Groups[0].Objects; len(o) != 2 || o[1].Name != "hpke.o" || o[1].BSS != 256 {
		t.Errorf("JSON libotaflow.a objects %+v", o)
	}
}

func TestSplitOtherArchives(t *testing.T) {
	r, err := Parse(strings.NewReader(excerpt), "t.map", []string{"libotaflow.a", "libmbedcrypto.a"})
	if err != nil {
		t.Fatal(err)
	}
	mbed := find(t, r, "libmbedcrypto.a")
	var objs []string
	for _, o := range mbed.Objects {
		objs = append(objs, o.Name)
	}
	if got, want := strings.Join(objs, ","), "bignum.o,ecp_curves.o,platform.o"; got != want {
		t.Errorf("split libmbedcrypto.a objects %s, want %s", got, want)
	}
}

func TestNotAMap(t *testing.T) {
	if _, err := Parse(strings.NewReader("hello\nworld\n"), "x.txt", nil); err == nil {
		t.Fatal("a file without a memory map parsed")
	}
}

func TestUnknownSection(t *testing.T) {
	m := "Linker script and memory map\n\n.mystery        0x00001000       0x10\n .mystery       0x00001000       0x10 /b/x.o\n"
	r, err := Parse(strings.NewReader(m), "u.map", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Unknown) != 1 || r.Unknown[0] != ".mystery" || r.Total.Rodata != 0x10 {
		t.Errorf("unknown section report %+v", r)
	}
}
