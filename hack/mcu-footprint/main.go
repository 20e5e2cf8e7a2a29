// Command mcu-footprint prints the flash and RAM that each part of a linked
// firmware image takes, from its GNU ld map file (internal/mcufootprint):
// a Markdown table, or JSON with -json. `make -C mcu footprint` runs it on
// the Cortex-M4 update-path program.
//
//	go run ./hack/mcu-footprint [-json] [-split libotaflow.a,...] FILE.map
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/otaflow/otaflow/internal/mcufootprint"
)

func main() {
	asJSON := flag.Bool("json", false, "write JSON instead of a Markdown table")
	split := flag.String("split", "libotaflow.a", "comma-separated archives to report per object file")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: mcu-footprint [-json] [-split libotaflow.a,...] FILE.map")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	r, err := mcufootprint.ParseFile(flag.Arg(0), strings.Split(*split, ","))
	if err == nil {
		err = r.Write(os.Stdout, *asJSON)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcu-footprint:", err)
		os.Exit(1)
	}
}
