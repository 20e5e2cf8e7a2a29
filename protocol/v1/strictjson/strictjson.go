// Package strictjson decodes protocol v1 request bodies exactly as the
// protocol spells them. encoding/json alone matches keys
// case-insensitively, lets the last of two duplicate keys win, reads null as
// a zero value and ignores unknown keys unless told; a client relying on any
// of that would work against one server and fail against another, so the
// OTA server refuses it all. Answers are decoded leniently by clients (new
// optional fields may appear within v1); requests are not.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Unmarshal decodes one JSON object into the struct v points to. Its
// top-level keys must be the struct's JSON field names exactly, each at
// most once, none null; nothing may follow the object. Which fields are
// required is the caller's to check (Validate methods).
func Unmarshal(data []byte, v any) error { return UnmarshalRequiring(data, v) }

// UnmarshalRequiring is Unmarshal, and also refuses an object in which a
// key of required is missing (signed payloads, where absent is not zero).
func UnmarshalRequiring(data []byte, v any, required ...string) error {
	names, err := fieldNames(v)
	if err != nil {
		return err
	}
	if err := checkKeys(data, names, required); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	return nil
}

// fieldNames lists the JSON names of the struct v points to.
func fieldNames(v any) (map[string]bool, error) {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("strictjson: want a pointer to a struct, got %T", v)
	}
	t = t.Elem()
	names := make(map[string]bool, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names[name] = true
	}
	return names, nil
}

func checkKeys(data []byte, names map[string]bool, required []string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil {
		return err
	} else if tok != json.Delim('{') {
		return errors.New("the body is not a JSON object")
	}
	seen := make(map[string]bool, len(names))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string) // object keys are always strings
		if !names[key] {
			return fmt.Errorf("unknown field %q (names are case-sensitive)", key)
		}
		if seen[key] {
			return fmt.Errorf("duplicate field %q", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if string(raw) == "null" {
			return fmt.Errorf("field %q is null: leave it out instead", key)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	for _, key := range required {
		if !seen[key] {
			return fmt.Errorf("missing field %q", key)
		}
	}
	return nil
}
