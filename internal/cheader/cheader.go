// Package cheader writes C headers of test inputs for the programs of
// mcu/test: Go values made by the code the OTA server runs, as C literals.
package cheader

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// String is b as a C string literal, in lines of at most 100 bytes
// (adjacent literals concatenate), escaping what is not printable ASCII
// and '?' (no trigraphs).
func String(b []byte) string {
	var s strings.Builder
	for i := 0; i < len(b) || i == 0; i += 100 {
		end := min(i+100, len(b))
		if i > 0 {
			s.WriteString("\n  ")
		}
		s.WriteByte('"')
		for _, c := range b[i:end] {
			switch {
			case c == '"' || c == '\\':
				s.WriteByte('\\')
				s.WriteByte(c)
			case c < 0x20 || c > 0x7e || c == '?':
				fmt.Fprintf(&s, "\\%03o", c)
			default:
				s.WriteByte(c)
			}
		}
		s.WriteByte('"')
	}
	return s.String()
}

// Array writes data as `static const unsigned char name[len]`.
func Array(b *strings.Builder, name string, data []byte) {
	fmt.Fprintf(b, "static const unsigned char %s[%d] = {", name, len(data))
	for i, c := range data {
		if i%16 == 0 {
			b.WriteString("\n ")
		}
		fmt.Fprintf(b, " 0x%02x,", c)
	}
	b.WriteString("\n};\n")
}

// WriteFile writes data to path through a temporary file and a rename, so
// that make never sees half a header.
func WriteFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Main is a generator command's main: it writes what generate makes to
// the file named by -out, and exits non-zero, naming the command, on error.
func Main(name string, generate func() ([]byte, error)) {
	out := flag.String("out", "", "the header to write")
	flag.Parse()
	if *out == "" {
		fmt.Fprintf(os.Stderr, "%s: -out is required\n", name)
		os.Exit(2)
	}
	h, err := generate()
	if err == nil {
		err = WriteFile(*out, h)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
