package cheader

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	long := strings.Repeat("x", 150)
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, `""`},
		{"plain", []byte("hello"), `"hello"`},
		{"quotes and backslash", []byte(`a"b\c`), `"a\"b\\c"`},
		{"no trigraph", []byte("??="), `"\077\077="`},
		{"control and high bytes", []byte{'\n', 0, 0xff}, `"\012\000\377"`},
		{"split at 100 bytes", []byte(long), `"` + long[:100] + `"` + "\n  " + `"` + long[100:] + `"`},
	} {
		if got := String(c.in); got != c.want {
			t.Errorf("%s: String = %s, want %s", c.name, got, c.want)
		}
	}
}

func TestArray(t *testing.T) {
	var b strings.Builder
	Array(&b, "k", []byte{0, 1, 0xab})
	want := "static const unsigned char k[3] = {\n  0x00, 0x01, 0xab,\n};\n"
	if b.String() != want {
		t.Errorf("Array = %q, want %q", b.String(), want)
	}
}
