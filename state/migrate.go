package state

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// A migration upgrades a decoded document from version From to From+1.
// Steps work on generic JSON because the old shape has no Go type any more.
// Each step lives in its own file, migrate_vN_vM.go, and is listed in
// migrations in order.
type migration struct {
	From  int
	Name  string // e.g. "v1 to v2: split address into public and private"
	Apply func(doc map[string]any) error
}

// migrations is every step from the oldest readable version to Version.
// Version 1 is the first released format, so there are none yet.
var migrations = []migration{}

// Decode parses a stored document of any readable version into the
// current State, migrating in memory. Backends that store the JSON form
// elsewhere (etcd) read through it, so they check and migrate as File does.
func Decode(raw []byte) (*State, error) { return decode(raw, migrations) }

// decode parses a stored document of any readable version into the
// current State, migrating in memory; the next Write stores it upgraded
// (and the backup keeps the old version).
func decode(raw []byte, steps []migration) (*State, error) {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if head.Version == nil {
		return nil, fmt.Errorf("%w: document has no version field", ErrUnsupportedVersion)
	}
	v := *head.Version
	if v > Version {
		return nil, fmt.Errorf("%w: version %d was written by a newer provision (this one reads up to %d); upgrade provision", ErrUnsupportedVersion, v, Version)
	}
	if v < Version {
		var err error
		if raw, err = migrate(raw, v, steps); err != nil {
			return nil, err
		}
	}
	var s State
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields() // a field we drop silently is data lost on the next write
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if s.Machines == nil {
		s.Machines = []Machine{}
	}
	return &s, nil
}

// migrate runs steps from version v up to Version and re-encodes the result.
func migrate(raw []byte, v int, steps []migration) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse version %d: %w", v, err)
	}
	for v < Version {
		step, ok := findStep(steps, v)
		if !ok {
			return nil, fmt.Errorf("%w: no migration from version %d (this provision reads %d)", ErrUnsupportedVersion, v, Version)
		}
		if err := step.Apply(doc); err != nil {
			return nil, fmt.Errorf("migrate state %s: %w", step.Name, err)
		}
		v++
		doc["version"] = v
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode migrated state: %w", err)
	}
	return out, nil
}

func findStep(steps []migration, from int) (migration, bool) {
	for _, s := range steps {
		if s.From == from {
			return s, true
		}
	}
	return migration{}, false
}
