// Package mcufootprint reports the flash and RAM that each part of a
// linked firmware image takes, from the GNU ld map file of the link
// (-Wl,-Map=FILE). Only input sections that survived --gc-sections are in
// the map's memory map, so the figures are what the image really holds.
// hack/mcu-footprint prints it; test/mcu holds docs/mcu.md to it.
//
// Sections are grouped by where they came from: the archives named by
// split (libotaflow.a, say), one row per object file and a subtotal;
// libmbedcrypto.a; the C runtime ("libc/libgcc/newlib": libc, libgcc,
// newlib's libgloss, crt*.o); and everything else ("other", one row per
// object: the test program and board support). Alignment padding the
// linker inserted is reported as "other" / "(fill)".
//
// Columns are bytes of .text (code), .rodata (constants, vector table,
// unwind and init tables), .data and .bss; flash is text+rodata+data (the
// initial values of .data are stored in flash on a device) and RAM is
// data+bss. The heap and the stack are not sections: measure them at run
// time (mcu/target/cortex-m4/measure.h).
package mcufootprint

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Sizes are the bytes of one row.
type Sizes struct {
	Text   uint64 `json:"text"`
	Rodata uint64 `json:"rodata"`
	Data   uint64 `json:"data"`
	BSS    uint64 `json:"bss"`
	Flash  uint64 `json:"flash"`
	RAM    uint64 `json:"ram"`
}

func (s *Sizes) add(kind string, n uint64) {
	switch kind {
	case kindText:
		s.Text += n
	case kindRodata:
		s.Rodata += n
	case kindData:
		s.Data += n
	case kindBSS:
		s.BSS += n
	}
	s.Flash = s.Text + s.Rodata + s.Data
	s.RAM = s.Data + s.BSS
}

func (s *Sizes) plus(o Sizes) {
	s.Text += o.Text
	s.Rodata += o.Rodata
	s.Data += o.Data
	s.BSS += o.BSS
	s.Flash = s.Text + s.Rodata + s.Data
	s.RAM = s.Data + s.BSS
}

// Object is one object file of a group.
type Object struct {
	Name string `json:"name"`
	Sizes
}

// Group is one source of sections: an archive, the runtime, or the rest.
type Group struct {
	Name string `json:"name"`
	Sizes
	Objects []Object `json:"objects,omitempty"`
}

// Report is the footprint of one image.
type Report struct {
	Map    string  `json:"map"`
	Groups []Group `json:"groups"`
	Total  Sizes   `json:"total"`
	// Unknown lists output sections that could not be classified; their
	// bytes are counted as rodata.
	Unknown []string `json:"unknown,omitempty"`
}

const (
	kindText   = "text"
	kindRodata = "rodata"
	kindData   = "data"
	kindBSS    = "bss"
	kindSkip   = ""

	groupRuntime = "libc/libgcc/newlib"
	groupOther   = "other"
	groupMbedTLS = "libmbedcrypto.a"
	fillObject   = "(fill)"
)

// classify maps a section name to its kind, "" when the name says nothing.
func classify(name string) string {
	has := func(prefixes ...string) bool {
		for _, p := range prefixes {
			if name == p || strings.HasPrefix(name, p+".") {
				return true
			}
		}
		return false
	}
	switch {
	case has(".text", ".init", ".fini", ".glue_7", ".glue_7t", ".vfp11_veneer", ".v4_bx", ".iplt", ".plt"):
		return kindText
	case has(".rodata", ".vectors", ".isr_vector", ".ARM.exidx", ".ARM.extab", ".eh_frame", ".init_array",
		".fini_array", ".preinit_array", ".ctors", ".dtors", ".rel.dyn", ".note", ".gnu.linkonce.r"):
		return kindRodata
	case has(".data", ".tm_clone_table", ".got", ".igot", ".igot.plt", ".sdata", ".gnu.linkonce.d"):
		return kindData
	case has(".bss", ".sbss", ".tbss", ".noinit", "COMMON", ".gnu.linkonce.b"):
		return kindBSS
	}
	return kindSkip
}

// nonAlloc reports output sections that take no space in the image.
func nonAlloc(name string) bool {
	for _, p := range []string{".debug", ".comment", ".ARM.attributes", ".stab", ".gnu.attributes", ".zdebug", "/DISCARD/"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// isRuntime reports the C runtime's files: libc, libm, libgcc, libgloss
// (rdimon, nosys) and the startup objects the compiler driver adds.
func isRuntime(base string) bool {
	return runtimeArchiveRe.MatchString(base) || runtimeObjectRe.MatchString(base)
}

var (
	// " .text.foo  0x00001234  0x56 /path/lib.a(x.o)", or without the name
	// when it was too long and printed on the line before.
	inputRe = regexp.MustCompile(`^ (\S+)?\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)(?:\s+(.*))?$`)
	// "/path/libx.a(member.o)"
	memberRe = regexp.MustCompile(`^(.*\.a)\((.*)\)$`)

	runtimeArchiveRe = regexp.MustCompile(`^lib(c|c_nano|g|g_nano|m|gcc|gcc_eh|nosys|rdimon|rdimon_nano|rdimon-v2m|rdpmon|stdc\+\+|stdc\+\+_nano|supc\+\+|supc\+\+_nano)\.a$`)
	runtimeObjectRe  = regexp.MustCompile(`^(crt.*|.*-crt0.*)\.o$`)
)

type parser struct {
	split   map[string]bool
	groups  map[string]*Group
	objects map[string]map[string]*Object
	unknown map[string]bool
}

// Parse reads a GNU ld map file.
func Parse(r io.Reader, mapName string, split []string) (*Report, error) {
	p := &parser{
		split:   map[string]bool{},
		groups:  map[string]*Group{},
		objects: map[string]map[string]*Object{},
		unknown: map[string]bool{},
	}
	for _, s := range split {
		if s = strings.TrimSpace(s); s != "" {
			p.split[s] = true
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	inMap := false
	out := ""     // current output section
	pending := "" // input section name printed alone on its line
	var sawSection bool
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if !inMap {
			inMap = line == "Linker script and memory map"
			continue
		}
		if line == "" {
			continue
		}
		if line[0] != ' ' {
			// Column 0: an output section (".text  0x... 0x..." or its
			// name alone), or LOAD, START GROUP, OUTPUT(...) lines.
			pending = ""
			if f := strings.Fields(line); line[0] == '.' || strings.HasPrefix(line, "/DISCARD/") {
				out = f[0]
				sawSection = true
			} else {
				out = ""
			}
			continue
		}
		if out == "" || nonAlloc(out) {
			continue
		}
		m := inputRe.FindStringSubmatch(line)
		if m == nil {
			// A section name alone; the address and size follow.
			if f := strings.Fields(line); len(f) == 1 && !strings.HasPrefix(f[0], "0x") && !strings.ContainsAny(f[0], "()=") {
				pending = f[0]
			}
			continue
		}
		name, file := m[1], m[4]
		if name == "" {
			if pending == "" {
				continue // "0xADDR 0xSIZE" after an assignment or symbol: not a section
			}
			name = pending
		}
		pending = ""
		if strings.HasPrefix(name, "*") && name != "*fill*" {
			continue // a linker script pattern such as *(.text)
		}
		size, err := strconv.ParseUint(m[3], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: bad size in %q", mapName, line)
		}
		if size == 0 {
			continue
		}
		kind := kindSkip
		if name != "*fill*" {
			kind = classify(name)
		}
		if kind == kindSkip {
			kind = classify(out)
		}
		if kind == kindSkip {
			p.unknown[out] = true
			kind = kindRodata
		}
		group, object := p.place(name, file)
		p.add(group, object, kind, size)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", mapName, err)
	}
	if !inMap || !sawSection {
		return nil, fmt.Errorf("%s: not a GNU ld map file (no memory map)", mapName)
	}
	return p.report(mapName), nil
}

// place returns the group and object row of an input section.
func (p *parser) place(name, file string) (group, object string) {
	if name == "*fill*" || file == "" {
		return groupOther, fillObject
	}
	archive, member := "", ""
	if m := memberRe.FindStringSubmatch(file); m != nil {
		archive, member = filepath.Base(m[1]), m[2]
	}
	base := filepath.Base(file)
	switch {
	case archive != "" && p.split[archive]:
		return archive, member
	case archive == groupMbedTLS:
		return groupMbedTLS, ""
	case archive != "" && isRuntime(archive):
		return groupRuntime, ""
	case archive == "" && isRuntime(base):
		return groupRuntime, ""
	case archive != "":
		return groupOther, archive + "(" + member + ")"
	}
	return groupOther, base
}

func (p *parser) add(group, object, kind string, n uint64) {
	g := p.groups[group]
	if g == nil {
		g = &Group{Name: group}
		p.groups[group] = g
		p.objects[group] = map[string]*Object{}
	}
	g.add(kind, n)
	if object == "" {
		return
	}
	o := p.objects[group][object]
	if o == nil {
		o = &Object{Name: object}
		p.objects[group][object] = o
	}
	o.add(kind, n)
}

// report orders groups as the package comment lists them and objects by
// name, (fill) last.
func (p *parser) report(mapName string) *Report {
	r := &Report{Map: mapName}
	var order []string
	var splits []string
	for s := range p.split {
		splits = append(splits, s)
	}
	sort.Strings(splits)
	order = append(order, splits...)
	order = append(order, groupMbedTLS, groupRuntime)
	for name := range p.groups {
		known := name == groupOther
		for _, o := range order {
			known = known || o == name
		}
		if !known {
			order = append(order, name)
		}
	}
	order = append(order, groupOther)
	for _, name := range order {
		g := p.groups[name]
		if g == nil {
			continue
		}
		for _, o := range p.objects[name] {
			g.Objects = append(g.Objects, *o)
		}
		sort.Slice(g.Objects, func(i, j int) bool {
			a, b := g.Objects[i].Name, g.Objects[j].Name
			if (a == fillObject) != (b == fillObject) {
				return b == fillObject
			}
			return a < b
		})
		r.Groups = append(r.Groups, *g)
		r.Total.plus(g.Sizes)
	}
	for u := range p.unknown {
		r.Unknown = append(r.Unknown, u)
	}
	sort.Strings(r.Unknown)
	return r
}

// Markdown writes the report as a table: a row per group, preceded by its
// objects' rows where the group is split.
func (r *Report) Markdown(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "Footprint of %s (bytes kept after --gc-sections)\n\n", r.Map)
	fmt.Fprintln(b, "| group | object | text | rodata | data | bss | flash | RAM |")
	fmt.Fprintln(b, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	row := func(group, object string, s Sizes, bold bool) {
		cells := []string{group, object}
		for _, v := range []uint64{s.Text, s.Rodata, s.Data, s.BSS, s.Flash, s.RAM} {
			c := strconv.FormatUint(v, 10)
			if bold {
				c = "**" + c + "**"
			}
			cells = append(cells, c)
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
	}
	for _, g := range r.Groups {
		for _, o := range g.Objects {
			row(g.Name, o.Name, o.Sizes, false)
		}
		object := ""
		if len(g.Objects) > 0 {
			object = "*all*"
		}
		row(g.Name, object, g.Sizes, len(g.Objects) > 0)
	}
	row("**total**", "", r.Total, true)
	if len(r.Unknown) > 0 {
		fmt.Fprintf(b, "\nUnclassified output sections (counted as rodata): %s\n", strings.Join(r.Unknown, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ParseFile parses the map file at path (Parse).
func ParseFile(path string, split []string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f, path, split)
}

// Write writes r as a Markdown table, or as indented JSON.
func (r *Report) Write(w io.Writer, asJSON bool) error {
	if !asJSON {
		return r.Markdown(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
