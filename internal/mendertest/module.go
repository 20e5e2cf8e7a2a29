package mendertest

import (
	"fmt"
	"strings"
)

// Payload types of the update modules every sandboxed client has.
const (
	// ModuleType copies the artifact's files into the device's Target
	// directory in ArtifactInstall; it needs no reboot and supports no
	// rollback, so the client reports success right after ArtifactCommit.
	ModuleType = "otaflow-test"
	// FailingModuleType fails ArtifactInstall, writing FailureMessage and
	// the artifact name to standard error (the client logs it, so the
	// deployment log carries it).
	FailingModuleType = "otaflow-test-fail"
)

// FailureMessage starts the error FailingModuleType reports.
const FailureMessage = "otaflow-test-fail: ArtifactInstall refused"

// moduleScript is the update module (protocol v3: `module STATE DIR`)
// for typ. Every call appends "typ STATE" to calls; Download waits while
// the file gate exists.
func moduleScript(typ, target, calls, gate string) string {
	var install string
	switch typ {
	case ModuleType:
		install = fmt.Sprintf(`	mkdir -p %[1]s
	for f in "$dir"/files/*; do
		[ -f "$f" ] || continue
		cp "$f" %[1]s/.tmp
		mv %[1]s/.tmp %[1]s/"$(basename "$f")"
	done`, shellQuote(target))
	case FailingModuleType:
		install = fmt.Sprintf(`	echo "%s: $(cat "$dir"/header/artifact_name)" >&2
	exit 1`, FailureMessage)
	default:
		panic("mendertest: no module for type " + typ)
	}
	return fmt.Sprintf(`#!/bin/sh
# Update module %[1]s (mendertest): touches nothing outside its sandbox.
set -eu
state=$1
dir=$2
echo "%[1]s $state" >>%[2]s
case $state in
Download)
	# The client stores the files itself once the module exits without
	# reading the streams; until then it stays in its download state.
	while [ -e %[4]s ]; do sleep 0.1; done
	;;
NeedsArtifactReboot | SupportsRollback)
	echo No
	;;
ArtifactInstall)
%[3]s
	;;
esac
exit 0
`, typ, shellQuote(calls), install, shellQuote(gate))
}

// keyValueScript prints each "key=value" line, the output format of the
// identity and inventory scripts.
func keyValueScript(lines []string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, l := range lines {
		fmt.Fprintf(&b, "printf '%%s\\n' %s\n", shellQuote(l))
	}
	return b.String()
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
