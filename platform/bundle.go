package platform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Bundle is a device-management extension package (protocol.md §8): the
// custom actions a device may advertise in Manage (d.supports.<ID>) and
// the parameters each takes. The JSON form is the platform's package
// format, read by ReadBundles.
type Bundle struct {
	ID          string                  `json:"bundleId"`
	Version     string                  `json:"version,omitempty"`
	Provider    string                  `json:"provider,omitempty"`
	DisplayName map[string]string       `json:"displayName,omitempty"` // locale → text; required in a bundle file
	Description map[string]string       `json:"description,omitempty"`
	Actions     map[string]BundleAction `json:"actions"`
}

// BundleAction is one custom action of a Bundle.
type BundleAction struct {
	DisplayName map[string]string `json:"actionDisplayName,omitempty"` // required in a bundle file
	Description map[string]string `json:"description,omitempty"`
	Parameters  []BundleParameter `json:"parameters,omitempty"`
}

// BundleParameter is one parameter of a custom action. Value, if set, is a
// regular expression (Go syntax) a given value must match; a parameter
// that is not given takes DefaultValue if it has one, and is an error if
// Required.
type BundleParameter struct {
	Name         string `json:"name"`
	Value        string `json:"value,omitempty"`
	Required     bool   `json:"required,omitempty"`
	DefaultValue string `json:"defaultValue,omitempty"`
}

// maxBundleFile bounds a bundle file (the platform documents no limit).
const maxBundleFile = 1 << 20

// LoadBundles reads a bundle file (see ReadBundles).
func LoadBundles(path string) ([]Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadBundles(f, path)
}

// ReadBundles reads extension packages in the platform's JSON format
// (protocol.md §8): one package object or a list of them. Every package
// needs bundleId, displayName (at least one locale) and at least one
// action, each with actionDisplayName; parameters need a name, and a value
// must be a valid regular expression that matches the defaultValue.
// Unknown members are errors. name prefixes error messages; every problem
// is reported, joined into one error that matches ErrInvalidConfig.
func ReadBundles(r io.Reader, name string) ([]Bundle, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBundleFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidConfig, name, err)
	}
	if len(b) > maxBundleFile {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes", ErrInvalidConfig, name, maxBundleFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var bundles []Bundle
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		err = dec.Decode(&bundles)
	} else {
		var one Bundle
		err = dec.Decode(&one)
		bundles = []Bundle{one}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidConfig, name, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: %s: data after the packages", ErrInvalidConfig, name)
	}
	var errs []error
	for i, bd := range bundles {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%w: %s: package %d (%q): %s", ErrInvalidConfig, name, i+1, bd.ID, fmt.Sprintf(format, args...)))
		}
		if len(bd.DisplayName) == 0 {
			bad("displayName needs at least one locale")
		}
		for _, id := range slices.Sorted(maps.Keys(bd.Actions)) {
			if len(bd.Actions[id].DisplayName) == 0 {
				bad("action %q: actionDisplayName needs at least one locale", id)
			}
		}
		if err := bd.validate(); err != nil {
			bad("%v", err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return bundles, nil
}

// validate checks IDs, actions and parameters; the regular expressions
// must compile and match their default values.
func (b Bundle) validate() error {
	if err := checkBundleIdent(b.ID); err != nil {
		return fmt.Errorf("bundleId %q: %v", short(b.ID), err)
	}
	switch b.ID {
	case "deviceActions", "firmwareActions":
		return fmt.Errorf("bundleId %q is a built-in action set", b.ID)
	}
	if len(b.Provider) > 1024 {
		return errors.New("provider longer than 1024 characters")
	}
	if len(b.Actions) == 0 {
		return errors.New("needs at least one action")
	}
	for _, id := range slices.Sorted(maps.Keys(b.Actions)) {
		if err := checkBundleIdent(id); err != nil {
			return fmt.Errorf("action %q: %v", short(id), err)
		}
		seen := map[string]bool{}
		for _, prm := range b.Actions[id].Parameters {
			if err := checkBundleIdent(prm.Name); err != nil {
				return fmt.Errorf("action %q: parameter name %q: %v", id, short(prm.Name), err)
			}
			if seen[prm.Name] {
				return fmt.Errorf("action %q: parameter %q twice", id, prm.Name)
			}
			seen[prm.Name] = true
			re, err := regexp.Compile(prm.Value)
			if err != nil {
				return fmt.Errorf("action %q: parameter %q: value is not a regular expression: %v", id, prm.Name, err)
			}
			if prm.DefaultValue != "" && !re.MatchString(prm.DefaultValue) {
				return fmt.Errorf("action %q: parameter %q: defaultValue %q does not match %q", id, prm.Name, short(prm.DefaultValue), prm.Value)
			}
		}
	}
	return nil
}

// customParams checks the parameters of custom action act of bundle b
// against its definition and returns them with the defaults filled in.
func (b Bundle) customParams(act string, params map[string]string) (map[string]string, error) {
	a, ok := b.Actions[act]
	if !ok {
		return nil, fmt.Errorf("%w: bundle %s has no action %q (it has %s)", ErrInvalidAction, b.ID, act,
			strings.Join(slices.Sorted(maps.Keys(b.Actions)), ", "))
	}
	out := map[string]string{}
	known := map[string]bool{}
	for _, prm := range a.Parameters {
		known[prm.Name] = true
		v, given := params[prm.Name]
		switch {
		case !given && prm.DefaultValue != "":
			v = prm.DefaultValue
		case !given && prm.Required:
			return nil, fmt.Errorf("%w: %s/%s needs parameter %q", ErrInvalidAction, b.ID, act, prm.Name)
		case !given:
			continue
		}
		if !regexp.MustCompile(prm.Value).MatchString(v) { // compiled by validate
			return nil, fmt.Errorf("%w: %s/%s parameter %s=%q does not match %q", ErrInvalidAction, b.ID, act, prm.Name, short(v), prm.Value)
		}
		out[prm.Name] = v
	}
	for _, n := range slices.Sorted(maps.Keys(params)) {
		if !known[n] {
			return nil, fmt.Errorf("%w: %s/%s has no parameter %q", ErrInvalidAction, b.ID, act, short(n))
		}
	}
	return out, nil
}
