#!/usr/bin/env bash
# Lint docs/openapi.yaml, the contract of device protocol v1, with Redocly
# CLI's recommended ruleset (configuration: hack/redocly.yaml); without an
# argument, docs/ddi-openapi.yaml (the hawkBit DDI front's) and
# docs/mender-openapi.yaml (the Mender front's) too.
#
# Redocly CLI is installed with npm into bin/node, once per pinned version.
# 1.34.20 runs on Node.js 18.17 and later, so Debian's own nodejs package
# (18.20 on bookworm) is enough; 2.x would need Node.js 20.19. When node or
# npm is missing, Debian's nodejs and npm are installed with apt-get (as
# root only).
#
#   hack/openapi-lint.sh [spec]    default: docs/openapi.yaml, docs/ddi-openapi.yaml and docs/mender-openapi.yaml
set -euo pipefail

REDOCLY_VERSION=1.34.20

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX="$ROOT/bin/node"
SPEC="${1:-$ROOT/docs/openapi.yaml}"
CONFIG="$ROOT/hack/redocly.yaml"

# No telemetry, no update check: the linter's only network use is npm.
export REDOCLY_TELEMETRY=off
export REDOCLY_SUPPRESS_UPDATE_NOTICE=true

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		echo "openapi-lint: node and npm are needed (Debian: apt-get install nodejs npm, as root)" >&2
		exit 1
	fi
	echo "openapi-lint: installing Debian's nodejs and npm" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

installed=""
if [[ -f "$PREFIX/node_modules/@redocly/cli/package.json" ]]; then
	installed=$(node -p 'require(process.argv[1]).version' "$PREFIX/node_modules/@redocly/cli/package.json" 2>/dev/null || true)
fi
if [[ "$installed" != "$REDOCLY_VERSION" ]]; then
	echo "openapi-lint: installing @redocly/cli@$REDOCLY_VERSION into ${PREFIX#"$ROOT"/}" >&2
	mkdir -p "$PREFIX"
	npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error --save-exact \
		"@redocly/cli@$REDOCLY_VERSION" >&2
fi

# --- hawkBit DDI front (docs/ddi-openapi.yaml) ---------------------------
# Its components.responses NotFound and MethodNotAllowed describe the
# answers to paths and methods it does not list; only internal/contract
# reads them, so no operation refers to them. The same holds for the
# Mender front's NotFound (docs/mender-openapi.yaml).
lint_spec() {
	local extra=()
	case $(basename "$1") in
	ddi-openapi.yaml | mender-openapi.yaml)
		extra=(--skip-rule=no-unused-components)
		;;
	esac
	"$PREFIX/node_modules/.bin/redocly" lint --config "$CONFIG" --format=stylish "${extra[@]}" "$1"
}
if [[ $# -eq 0 ]]; then
	rc=0
	lint_spec "$ROOT/docs/openapi.yaml" || rc=1
	lint_spec "$ROOT/docs/ddi-openapi.yaml" || rc=1
	lint_spec "$ROOT/docs/mender-openapi.yaml" || rc=1
	exit "$rc"
fi
lint_spec "$SPEC"
# --------------------------------------------------------------------------
