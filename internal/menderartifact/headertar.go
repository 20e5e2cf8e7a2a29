package menderartifact

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// headerInfoV3 is header-info of format version 3.
type headerInfoV3 struct {
	Payloads []struct {
		Type *string `json:"type"` // null for an empty payload
	} `json:"payloads"`
	ArtifactProvides *struct {
		ArtifactName  string `json:"artifact_name"`
		ArtifactGroup string `json:"artifact_group"`
	} `json:"artifact_provides"`
	ArtifactDepends *struct {
		ArtifactName  []string `json:"artifact_name"`
		DeviceType    []string `json:"device_type"`
		ArtifactGroup []string `json:"artifact_group"`
	} `json:"artifact_depends"`
}

// headerInfoV2 is header-info of format version 2.
type headerInfoV2 struct {
	ArtifactName string `json:"artifact_name"`
	Updates      []struct {
		Type *string `json:"type"`
	} `json:"updates"`
	DeviceTypesCompatible []string `json:"device_types_compatible"`
}

// typeInfo is headers/NNNN/type-info. Its type is not used: rootfs-image
// artifacts leave it empty and header-info is authoritative.
type typeInfo struct {
	ArtifactProvides map[string]string     `json:"artifact_provides"`
	ArtifactDepends  map[string]stringList `json:"artifact_depends"`
}

// stringList is a type-info depends value: a string or a list of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return errors.New("a depends value is null")
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = stringList{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("a depends value is neither a string nor a list of strings")
	}
	*l = list
	return nil
}

// headerContent is what one header archive declares.
type headerContent struct {
	nameField    string // where the name came from, for messages
	name         string
	group        string
	deviceTypes  []string
	payloadTypes []string
	provides     map[string]string
	depends      map[string][]string
}

// readHeaderArchive decompresses and reads a header archive (header.tar.* or,
// with augment, header-augment.tar.*). Its first entry must be header-info;
// headers/NNNN/type-info are read for their provides and depends, everything
// else (scripts, meta-data, files) is skipped.
func readHeaderArchive(entry, compression string, archive []byte, version int, augment bool, lim limits) (*headerContent, error) {
	dec, closeDec, err := decompressor(compression, archive, lim.header)
	if err != nil {
		return nil, invalid("%s: %v", entry, err)
	}
	defer closeDec()
	tr := tar.NewReader(newBoundedReader(dec, lim.header, entry))

	var c *headerContent
	typeInfos := map[int]*typeInfo{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, archiveError(entry, err)
		}
		if c == nil {
			if h.Name != "header-info" {
				return nil, invalid("%s: the first entry is %s, not header-info", entry, quoteShort(h.Name))
			}
			b, err := readSmall(tr, h, entry, lim.file)
			if err != nil {
				return nil, err
			}
			if c, err = parseHeaderInfo(entry, b, version); err != nil {
				return nil, err
			}
			continue
		}
		index, file, ok := payloadFile(h.Name)
		if !ok || file != "type-info" {
			continue
		}
		if index >= len(c.payloadTypes) {
			return nil, invalid("%s: %s is for payload %d, but header-info lists %d payload(s)", entry, h.Name, index, len(c.payloadTypes))
		}
		if typeInfos[index] != nil {
			return nil, invalid("%s: %s appears twice", entry, h.Name)
		}
		b, err := readSmall(tr, h, entry, lim.file)
		if err != nil {
			return nil, err
		}
		ti := &typeInfo{}
		if err := json.Unmarshal(b, ti); err != nil {
			return nil, invalid("%s: %s: %v", entry, h.Name, err)
		}
		typeInfos[index] = ti
	}
	if c == nil {
		return nil, invalid("%s: header-info is missing", entry)
	}
	for i := range c.payloadTypes {
		ti := typeInfos[i]
		if ti == nil {
			if augment {
				continue
			}
			return nil, invalid("%s: headers/%04d/type-info is missing", entry, i)
		}
		c.mergePayload(ti)
	}
	return c, nil
}

// archiveError turns an error of a header archive's tar reader into one of
// this package's; the archive was read whole, so an early end is corruption,
// not truncation.
func archiveError(entry string, err error) error {
	if errors.Is(err, ErrInvalid) {
		return err
	}
	return invalid("%s: %v", entry, err)
}

func readSmall(tr *tar.Reader, h *tar.Header, entry string, max int64) ([]byte, error) {
	if h.Typeflag != tar.TypeReg {
		return nil, invalid("%s: %s is not a regular file", entry, h.Name)
	}
	if h.Size > max {
		return nil, invalid("%s: %s is %d bytes, more than the %d allowed", entry, h.Name, h.Size, max)
	}
	b := make([]byte, h.Size)
	if _, err := io.ReadFull(tr, b); err != nil {
		return nil, archiveError(entry, fmt.Errorf("%s: %w", h.Name, err))
	}
	return b, nil
}

// payloadFile splits "headers/0001/type-info" into 1 and "type-info".
func payloadFile(name string) (int, string, bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 3 || parts[0] != "headers" || len(parts[1]) != 4 {
		return 0, "", false
	}
	for _, r := range parts[1] {
		if r < '0' || r > '9' {
			return 0, "", false
		}
	}
	index, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, "", false
	}
	return index, parts[2], true
}

func parseHeaderInfo(entry string, b []byte, version int) (*headerContent, error) {
	c := &headerContent{provides: map[string]string{}}
	if version == 2 {
		var hi headerInfoV2
		if err := json.Unmarshal(b, &hi); err != nil {
			return nil, invalid("%s: header-info: %v", entry, err)
		}
		if len(hi.Updates) == 0 {
			return nil, invalid("%s: header-info lists no updates", entry)
		}
		for _, u := range hi.Updates {
			c.payloadTypes = append(c.payloadTypes, deref(u.Type))
		}
		c.nameField = "artifact_name"
		c.name = hi.ArtifactName
		c.deviceTypes = hi.DeviceTypesCompatible
	} else {
		var hi headerInfoV3
		if err := json.Unmarshal(b, &hi); err != nil {
			return nil, invalid("%s: header-info: %v", entry, err)
		}
		if len(hi.Payloads) == 0 {
			return nil, invalid("%s: header-info lists no payloads", entry)
		}
		for _, u := range hi.Payloads {
			c.payloadTypes = append(c.payloadTypes, deref(u.Type))
		}
		c.nameField = "artifact_provides.artifact_name"
		if ap := hi.ArtifactProvides; ap != nil {
			c.name = ap.ArtifactName
			c.group = ap.ArtifactGroup
		}
		if ad := hi.ArtifactDepends; ad != nil {
			c.deviceTypes = ad.DeviceType
			c.addDepends("artifact_name", ad.ArtifactName)
			c.addDepends("artifact_group", ad.ArtifactGroup)
		}
	}
	if err := c.validate(entry); err != nil {
		return nil, err
	}
	c.provides["artifact_name"] = c.name
	if c.group != "" {
		c.provides["artifact_group"] = c.group
	}
	return c, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (c *headerContent) addDepends(key string, values []string) {
	if len(values) == 0 {
		return
	}
	if c.depends == nil {
		c.depends = map[string][]string{}
	}
	c.depends[key] = values
}

// mergePayload adds a payload's provides and depends; a later payload's
// value for the same key wins.
func (c *headerContent) mergePayload(ti *typeInfo) {
	maps.Copy(c.provides, ti.ArtifactProvides)
	for k, v := range ti.ArtifactDepends {
		c.addDepends(k, []string(v))
	}
}

// augment applies an augmented header: its payload types replace the
// original ones, its provides and depends are added. It may not change the
// artifact's name or device types.
func (c *headerContent) augment(entry string, a *headerContent) error {
	if len(a.payloadTypes) != len(c.payloadTypes) {
		return invalid("%s lists %d payload(s), header.tar lists %d", entry, len(a.payloadTypes), len(c.payloadTypes))
	}
	if a.name != c.name {
		return invalid("%s: artifact_name %s differs from %s", entry, quoteShort(a.name), quoteShort(c.name))
	}
	if !slices.Equal(a.deviceTypes, c.deviceTypes) {
		return invalid("%s: its device types differ from header.tar's", entry)
	}
	for i, t := range a.payloadTypes {
		if t != "" {
			c.payloadTypes[i] = t
		}
	}
	for k, v := range a.provides {
		if k != "artifact_name" && k != "artifact_group" {
			c.provides[k] = v
		}
	}
	for k, v := range a.depends {
		if k != "artifact_name" && k != "artifact_group" {
			c.addDepends(k, v)
		}
	}
	return nil
}

// validate checks the values a release is matched against.
func (c *headerContent) validate(entry string) error {
	if c.name == "" {
		return invalid("%s: header-info: %s is empty", entry, c.nameField)
	}
	if err := checkName(c.name); err != nil {
		return invalid("%s: header-info: %s %v", entry, c.nameField, err)
	}
	if c.group != "" {
		if err := checkName(c.group); err != nil {
			return invalid("%s: header-info: artifact_provides.artifact_group %v", entry, err)
		}
	}
	if len(c.deviceTypes) == 0 {
		return invalid("%s: header-info lists no compatible device types", entry)
	}
	for _, d := range c.deviceTypes {
		if d == "" {
			return invalid("%s: header-info: a compatible device type is empty", entry)
		}
		if err := checkName(d); err != nil {
			return invalid("%s: header-info: device type %s %v", entry, quoteShort(d), err)
		}
	}
	return nil
}

func checkName(s string) error {
	if len(s) > MaxNameLength {
		return fmt.Errorf("is longer than %d bytes", MaxNameLength)
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return errors.New("contains a control character")
	}
	return nil
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
