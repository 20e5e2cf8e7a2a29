package rollout

import (
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Version is a parsed firmware version. Release versions are strict
// semantic versions (the API validates them); devices may report looser
// forms ("2.1", "v2.1.0"), which are read the way semver tools read them.
type Version struct {
	raw string
	v   *semver.Version
}

// ParseVersion parses s; Valid reports whether it is a version at all.
func ParseVersion(s string) Version {
	// The strict parser has no regular expression: the common case (a
	// release version, a device on one) costs a fraction of the loose one.
	v, err := semver.StrictNewVersion(s)
	if err != nil {
		if v, err = semver.NewVersion(s); err != nil {
			return Version{raw: s}
		}
	}
	return Version{raw: s, v: v}
}

// Valid reports whether the string was a semantic version.
func (v Version) Valid() bool { return v.v != nil }

// String is the version as given.
func (v Version) String() string { return v.raw }

// Compare orders two valid versions by semver precedence (build metadata
// ignored): -1, 0 or +1. Invalid versions sort below every valid one and
// among themselves by their bytes, so the order stays total; callers
// check Valid first where that matters.
func (v Version) Compare(o Version) int {
	switch {
	case v.v != nil && o.v != nil:
		return v.v.Compare(o.v)
	case v.v == nil && o.v == nil:
		return strings.Compare(v.raw, o.raw)
	case v.v == nil:
		return -1
	default:
		return 1
	}
}

// Canonical is the version in semver's canonical form ("v2.1" and "2.1.0"
// are both "2.1.0"), or the string as given when it is not a version: a
// key under which equal versions meet.
func (v Version) Canonical() string {
	if v.v == nil {
		return v.raw
	}
	return v.v.String()
}
