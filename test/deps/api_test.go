package deps

import (
	"go/types"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"

	"github.com/otaflow/otaflow/internal/testenv"
)

// TestPublicAPINamesNoInternalType: what device makers import (the agent
// and the protocol packages) must not name a type from an internal package
// in anything exported, or code in another module could not write it down.
func TestPublicAPINamesNoInternalType(t *testing.T) {
	cfg := &packages.Config{Mode: packages.NeedName | packages.NeedTypes, Dir: testenv.Root()}
	pkgs, err := packages.Load(cfg, "./agent", "./protocol/...")
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 4 {
		t.Fatalf("loaded only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		if len(p.Errors) > 0 {
			t.Fatalf("%s: %v", p.PkgPath, p.Errors)
		}
		for _, leak := range internalTypesIn(p.Types) {
			t.Errorf("%s: %s", p.PkgPath, leak)
		}
	}
}

// TestInternalTypeCheckCanFail: the walk sees an internal type where one
// is named (otaserver's Config names internal/devicestore.Store).
func TestInternalTypeCheckCanFail(t *testing.T) {
	cfg := &packages.Config{Mode: packages.NeedName | packages.NeedTypes, Dir: testenv.Root()}
	pkgs, err := packages.Load(cfg, "./otaserver")
	if err != nil || len(pkgs) != 1 {
		t.Fatalf("load otaserver: %v", err)
	}
	if leaks := internalTypesIn(pkgs[0].Types); len(leaks) == 0 {
		t.Fatal("no internal type found in otaserver's API: the walk is broken")
	}
}

// internalTypesIn lists exported identifiers whose types reach a named
// type of an internal package.
func internalTypesIn(pkg *types.Package) []string {
	var leaks []string
	seen := map[types.Type]bool{}
	var walk func(where string, t types.Type)
	walk = func(where string, t types.Type) {
		if t == nil || seen[t] {
			return
		}
		seen[t] = true
		switch t := t.(type) {
		case *types.Named:
			if obj := t.Obj(); obj.Pkg() != nil && strings.Contains(obj.Pkg().Path()+"/", "/internal/") {
				leaks = append(leaks, where+" names "+obj.Pkg().Path()+"."+obj.Name())
				return
			}
			if t.Obj().Pkg() == pkg {
				walk(where, t.Underlying())
				for i := 0; i < t.NumMethods(); i++ {
					if m := t.Method(i); m.Exported() {
						walk(where+"."+m.Name(), m.Type())
					}
				}
			}
			for i := 0; i < t.TypeArgs().Len(); i++ {
				walk(where, t.TypeArgs().At(i))
			}
		case *types.Alias:
			walk(where, types.Unalias(t))
		case *types.Pointer:
			walk(where, t.Elem())
		case *types.Slice:
			walk(where, t.Elem())
		case *types.Array:
			walk(where, t.Elem())
		case *types.Map:
			walk(where, t.Key())
			walk(where, t.Elem())
		case *types.Chan:
			walk(where, t.Elem())
		case *types.Signature:
			walk(where, t.Params())
			walk(where, t.Results())
		case *types.Tuple:
			for i := 0; i < t.Len(); i++ {
				walk(where, t.At(i).Type())
			}
		case *types.Struct:
			for i := 0; i < t.NumFields(); i++ {
				if f := t.Field(i); f.Exported() || f.Embedded() {
					walk(where+"."+f.Name(), f.Type())
				}
			}
		case *types.Interface:
			for i := 0; i < t.NumMethods(); i++ {
				walk(where+"."+t.Method(i).Name(), t.Method(i).Type())
			}
		}
	}
	scope := pkg.Scope()
	for _, name := range scope.Names() {
		if obj := scope.Lookup(name); obj.Exported() {
			walk(name, obj.Type())
		}
	}
	return leaks
}
