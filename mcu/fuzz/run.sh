#!/usr/bin/env bash
# Runs the libFuzzer targets built by fuzz.mk.
#
#   run.sh seeds OUT CORPUS TARGET...          every seed once (-runs=0)
#   run.sh fuzz  OUT CORPUS SECONDS TARGET...  fuzz each target SECONDS s (or 2m, 1h)
#
# OUT holds the binaries (OUT/fuzz_<target>); CORPUS/<target> the committed
# seeds, which are only read. Fuzzing writes new inputs to OUT/new/<target>
# and a crash to OUT/crash-<target>-*; logs go to OUT/log-<target>.txt.
set -euo pipefail

usage() {
  echo "usage: run.sh seeds OUT CORPUS TARGET... | run.sh fuzz OUT CORPUS SECONDS TARGET..." >&2
  exit 2
}

[ $# -ge 3 ] || usage
mode=$1 out=$2 corpus=$3
shift 3
case $mode in
  seeds) ;;
  fuzz)
    [ $# -ge 1 ] || usage
    time=$1 secs=$1
    shift
    # Seconds, or a duration as make fuzz takes it for Go's fuzzers: 90s, 2m, 1h.
    case $secs in
      *h) [[ ${secs%h} =~ ^[1-9][0-9]*$ ]] && secs=$((${secs%h} * 3600)) ;;
      *m) [[ ${secs%m} =~ ^[1-9][0-9]*$ ]] && secs=$((${secs%m} * 60)) ;;
      *s) secs=${secs%s} ;;
    esac
    [[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: SECONDS must be a positive integer (or 90s, 2m, 1h), not '$time'" >&2; exit 2; }
    ;;
  *) usage ;;
esac
[ $# -ge 1 ] || usage

# Readable stacks, and UBSan reports that fail the run.
symbolizer=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)
if [ -n "$symbolizer" ]; then
  export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$symbolizer}
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

fail=0
for t in "$@"; do
  bin=$out/fuzz_$t
  seeds=$corpus/$t
  log=$out/log-$t.txt
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is missing: build it with make -C mcu fuzz-build" >&2
    exit 1
  fi
  if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then
    echo "run.sh: no seeds in $seeds" >&2
    exit 1
  fi
  case $mode in
    seeds)
      n=$(find "$seeds" -type f | wc -l)
      if "$bin" -runs=0 -artifact_prefix="$out/crash-$t-" "$seeds" >"$log" 2>&1; then
        echo "fuzz_$t: $n seeds ok"
      else
        echo "FAIL fuzz_$t: a seed crashed or tripped a sanitizer (log $log):" >&2
        tail -n 40 "$log" >&2
        fail=1
      fi
      ;;
    fuzz)
      new=$out/new/$t
      mkdir -p "$new"
      echo "== fuzz_$t for ${secs}s (new inputs: $new)"
      # New inputs go to the first directory only: the seeds stay untouched.
      if "$bin" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$out/crash-$t-" "$new" "$seeds" >"$log" 2>&1; then
        grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "$log" || true
      else
        echo "FAIL fuzz_$t: finding saved as $(ls -t "$out"/crash-"$t"-* 2>/dev/null | head -n 1) (log $log):" >&2
        tail -n 40 "$log" >&2
        fail=1
      fi
      ;;
  esac
done
exit $fail
