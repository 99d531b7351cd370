package providers

import (
	"errors"
	"reflect"
	"testing"
)

type testHost struct {
	Address string `json:"address"`
	Port    int    `json:"port,omitempty"`
}

type testSettings struct {
	Name   string            `json:"name"`
	Size   int32             `json:"size_gb,omitempty"`
	CPUs   float64           `json:"cpus,omitempty"`
	Public *bool             `json:"public,omitempty"`
	Tags   []string          `json:"tags,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Hosts  []testHost        `json:"hosts,omitempty"`
}

// TestSettingsDecode: a pool's settings decode the same whether they came
// from YAML (ints) or Pulumi (float64s), and every problem is named by its
// key path, with what decoded kept.
func TestSettingsDecode(t *testing.T) {
	t.Parallel()
	yes := true
	tests := []struct {
		name string
		in   Settings
		want testSettings
		errs []SettingError
	}{
		{"yaml values", Settings{"name": "a", "size_gb": 20, "cpus": 1, "public": true, "tags": []any{"x"},
			"labels": map[string]any{"k": "v"}, "hosts": []any{map[string]any{"address": "h", "port": 22}}},
			testSettings{Name: "a", Size: 20, CPUs: 1, Public: &yes, Tags: []string{"x"}, Labels: map[string]string{"k": "v"},
				Hosts: []testHost{{Address: "h", Port: 22}}}, nil},
		{"pulumi numbers", Settings{"name": "a", "size_gb": 20.0, "cpus": 1.5},
			testSettings{Name: "a", Size: 20, CPUs: 1.5}, nil},
		{"null is unset", Settings{"name": nil}, testSettings{}, nil},
		{"wrong types", Settings{"name": 7, "size_gb": 1.5, "public": "yes", "tags": "x"}, testSettings{},
			[]SettingError{
				{Key: "name", Msg: "expected a string, got number 7"},
				{Key: "public", Msg: `expected true or false, got string "yes"`},
				{Key: "size_gb", Msg: "expected an integer, got number 1.5"},
				{Key: "tags", Msg: `expected a list, got string "x"`},
			}},
		{"out of range", Settings{"size_gb": 1 << 40}, testSettings{},
			[]SettingError{{Key: "size_gb", Msg: "integer number 1099511627776 is out of range"}}},
		{"unknown keys, nested too", Settings{"name": "a", "nmae": "b", "hosts": []any{map[string]any{"address": "h", "prot": 22}}},
			testSettings{Name: "a", Hosts: []testHost{{Address: "h"}}},
			[]SettingError{
				{Key: "hosts[0].prot", Msg: `unknown setting "prot"`, Hint: `did you mean "port"?`, Unknown: true},
				{Key: "nmae", Msg: `unknown setting "nmae"`, Hint: `did you mean "name"?`, Unknown: true},
			}},
		{"far from anything", Settings{"zzz": 1}, testSettings{},
			[]SettingError{{Key: "zzz", Msg: `unknown setting "zzz"`, Hint: "valid settings: cpus, hosts, labels, name, public, size_gb, tags", Unknown: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got testSettings
			errs := tt.in.Decode(&got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decoded %+v, want %+v", got, tt.want)
			}
			if !reflect.DeepEqual([]SettingError(errs), tt.errs) {
				t.Errorf("errors %#v, want %#v", errs, tt.errs)
			}
			err := errs.Err("test")
			if (err != nil) != (len(tt.errs) > 0) || err != nil && !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("Err() = %v, want ErrInvalidSpec exactly when there are errors", err)
			}
		})
	}
}
