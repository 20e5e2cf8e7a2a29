#!/usr/bin/env bash
# Writes the seed corpora of the fuzz targets into mcu/fuzz/corpus/<target>
# from the conformance vectors (testdata/conformance) and the bodies of
# docs/protocol.md. The seeds are committed; run this again only to
# refresh them: it writes only missing files (FORCE=1 rewrites all).
# Needs jq, base64 and basenc (coreutils).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
vec=$root/testdata/conformance
out=$here/corpus
force=${FORCE:-}

for tool in jq base64 basenc; do
  command -v "$tool" >/dev/null || { echo "seeds.sh: $tool is missing (install it: jq, coreutils)" >&2; exit 1; }
done
[ -d "$vec" ] || { echo "seeds.sh: no conformance vectors at $vec" >&2; exit 1; }

# put TARGET NAME: stdin becomes corpus/TARGET/NAME unless it exists.
put() {
  local f=$out/$1/$2
  mkdir -p "$out/$1"
  if [ -n "$force" ] || [ ! -e "$f" ]; then
    cat >"$f.tmp" && mv "$f.tmp" "$f"
  else
    cat >/dev/null
  fi
}

unhex() { tr 'a-f' 'A-F' | basenc --base16 -d; }
# le64 N: N as 8 little-endian bytes.
le64() { printf '%016x' "$1" | sed 's/../& /g' | awk '{for (i = NF; i >= 1; i--) printf "%s", $i}' | unhex; }

assign() { # the response body of a 3-assignments.json vector, compact
  jq -c --arg n "$1" '.vectors[] | select(.name == $n) | .response' "$vec/3-assignments.json"
}
payload() { # its decoded payload, byte for byte as signed
  jq -r --arg n "$1" '.vectors[] | select(.name == $n) | .response.assignment.payload' "$vec/3-assignments.json" |
    base64 -d
}

# --- answer: GET /v1/update bodies and payloads -------------------------
for n in install install-ecdsa-p256 install-p256-device install-without-vendor-signature rollback commit \
  answer-without-assignment answer-rollout-not-namespaced bad-signature other-device expired not-yet-valid \
  wrong-nonce below-floor kem-mismatch rollout-mismatch commit-without-commit-flag install-with-commit-flag \
  unsupported-suite unknown-field duplicate-field null-field trailing-data security-version-too-large \
  time-not-rfc3339 expires-not-after-issued wrapped-key-wrong-size; do
  assign "$n" | put answer "response-$n.json"
done
for n in install install-p256-device commit duplicate-field null-field trailing-data; do
  payload "$n" | put answer "payload-$n.json"
done
printf '%s' '{"action":"cancel","rollout":"fleet/sensor-2.1.0-eu","reason":"rollout aborted"}' |
  put answer response-cancel.json

# --- keyset: GET /v1/keys bodies and payloads (fuzz_keyset.c) ----------
for n in $(jq -r '.vectors[] | select(.keySet != null) | .name' "$vec/6-keysets.json"); do
  jq -c --arg n "$n" '.vectors[] | select(.name == $n) | .keySet' "$vec/6-keysets.json" | put keyset "body-$n.json"
done
for n in add-key; do
  jq -r --arg n "$n" '.vectors[] | select(.name == $n) | .keySet.payload' "$vec/6-keysets.json" | base64 -d |
    put keyset "payload-$n.json"
done
# A set of the P-256 key alone: fuzz_keyset.c signs it, so it is accepted.
jq -r '.keys.p256 | "\(.keyID) \(.pkix)"' "$vec/6-keysets.json" | {
  read -r id pkix
  printf '{"serial":2,"keys":[{"keyID":"%s","algorithm":"ecdsa-p256-sha256","publicKey":"%s"}]}' \
    "$id" "$(printf '%s' "$pkix" | unhex | base64 -w0)"
} | put keyset payload-p256-alone.json

# --- json: protocol bodies and grammar corners --------------------------
for n in install rollback commit answer-without-assignment; do
  assign "$n" | put json "update-$n.json"
done
for n in install install-p256-device rollback commit duplicate-field unknown-field null-field trailing-data \
  security-version-too-large; do
  payload "$n" | put json "payload-$n.json"
done
for i in 0 1; do
  jq -r ".vectors[$i].request" "$vec/4-enroll.json" | put json "enroll-request-$i.json"
  jq -r ".vectors[$i].response" "$vec/4-enroll.json" | put json "enroll-answer-$i.json"
done
jq -r '.vectors[0].response' "$vec/5-sealed-token.json" | put json enroll-sealed-token.json
jq -c '.vectors[0].keySet' "$vec/6-keysets.json" | put json keyset.json
jq -r '.vectors[0].keySet.payload' "$vec/6-keysets.json" | base64 -d | put json keyset-payload.json
printf '%s' '{"code": "not_assigned", "message": "this device holds no assignment to the blob"}' |
  put json error.json
printf '%s' '{"protocol": "otaflow/v1", "revision": 4, "features": ["commit", "boot", "nonce", "sealed-token", "key-rotation"], "assignmentKeyIDs": ["4964…", "324b…"]}' |
  put json info.json
printf '%s' '{"deviceID": "sensor-0042", "bootstrapToken": "factory-token-2026-0123456789abcdef", "kem": "x25519", "publicKey": "AAAA", "deviceType": "sensor-v1", "labels": {"region": "eu", "site": "plant-7"}, "version": "2.0.3", "securityFloor": 4}' |
  put json enroll-doc.json
printf '%s' '["\"\\\/\b\f\n\r\t","\u00e9\u20AC\ud83d\ude00","é€😀","a\u0000b",""]' | put json strings.json
printf '%s' '[0,-0,1.0,1e3,-1.5E+10,2.5e-3,18446744073709551615,18446744073709551616,123456789012345678901234567890]' |
  put json numbers.json
printf '%s' '[[[[[[true]]]]],{"a":{"b":{"c":null}}},false,null]' | put json nesting.json
printf '%s' '{"a":1,"b":2,"a":3,"\u0062":null}' | put json duplicates.json

# --- header: header ‖ encryptedSize ‖ flags ‖ body (fuzz_header.c) -------
blob() { jq -r --arg n "$1" '.vectors[] | select(.name == $n) | .blob' "$vec/1-chunks.json"; }
size() { jq -r --arg n "$1" '.vectors[] | select(.name == $n) | .encryptedSize' "$vec/1-chunks.json"; }
header_seed() { # NAME FLAGS: a vector's blob as a header seed
  local hex
  hex=$(blob "$1")
  { printf '%s' "${hex:0:116}" | unhex
    le64 "$(size "$1")"
    printf '%02x' "$2" | unhex
    printf '%s' "${hex:116}" | unhex; } | put header "$1-$2.bin"
}
for n in hello flipped-tag truncated-inside-tag flipped-commitment bad-magic format-version-2 suite-2 chunk-log2-9 \
  chunk-log2-21; do
  header_seed "$n" 0
done
header_seed hello 226      # size from the input, 128-byte pieces
header_seed three-chunks 1  # another key: commitment rewritten, chunks fail
header_seed three-chunks 15 # and resumed at the last chunk, size from the input

# --- chunk: mode, seed, operations (fuzz_chunk.c) ------------------------
printf '\x00\x00' | put chunk untouched.bin
printf '\x50\x05' | put chunk untouched-split-s.bin
printf '\x08\x01' | put chunk resume-at-2.bin
printf '\x00\x00\x00\x10\x00\x01' | put chunk xor-header.bin
printf '\x00\x00\x00\xbe\x08\x80' | put chunk xor-chunk-2.bin
printf '\x01\x00\x01\x40\x06\x00' | put chunk truncate-inside.bin
printf '\x01\x00\x01\x5a\x08\x00' | put chunk truncate-at-boundary.bin
printf '\x01\x00\x02\x40\xff\x03' | put chunk insert.bin
printf '\x00\x00\x03\x00\x00\x00' | put chunk swap.bin
printf '\x01\x00\x04\x01\x02\x00' | put chunk duplicate-before-last.bin
printf '\x01\x00\x05\x02\x00\x00' | put chunk delete-last.bin
printf '\x05\x00\x05\x01\x00\x00\x00\x00\x00\x01' | put chunk delete-xor.bin

echo "seeds.sh: corpus in $out ($(du -sh "$out" | cut -f1))"
