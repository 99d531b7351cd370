package gce

import (
	"strings"
)

// A GCE resource reference is a full URL
// (https://compute.googleapis.com/compute/v1/projects/p/zones/z/machineTypes/m),
// a partial URL from the project (projects/p/zones/z/machineTypes/m), or a
// partial URL inside the caller's project (zones/z/machineTypes/m). GCE
// accepts all three wherever it takes a URL; a bare name is accepted only
// where the API says so (bulkInsert's instanceProperties.machineType).

// refPath splits a reference into its project and the path after
// projects/<p>/, with the caller's project as the default.
func refPath(ref, project string) (string, []string) {
	s := ref
	if i := strings.Index(s, "/compute/v1/"); i >= 0 && strings.HasPrefix(s, "http") {
		s = s[i+len("/compute/v1/"):]
	}
	parts := strings.Split(strings.Trim(s, "/"), "/")
	if len(parts) >= 2 && parts[0] == "projects" {
		return parts[1], parts[2:]
	}
	return project, parts
}

// zonalRef parses <kind> under a zone: zones/<z>/<kind>/<name>.
func zonalRef(ref, project, kind string) (p, zone, name string, ok bool) {
	p, parts := refPath(ref, project)
	if len(parts) != 4 || parts[0] != "zones" || parts[2] != kind || parts[1] == "" || parts[3] == "" {
		return "", "", "", false
	}
	return p, parts[1], parts[3], true
}

// regionalRef parses regions/<r>/<kind>/<name>.
func regionalRef(ref, project, kind string) (p, region, name string, ok bool) {
	p, parts := refPath(ref, project)
	if len(parts) != 4 || parts[0] != "regions" || parts[2] != kind || parts[1] == "" || parts[3] == "" {
		return "", "", "", false
	}
	return p, parts[1], parts[3], true
}

// globalRef parses global/<kind>/<name>.
func globalRef(ref, project, kind string) (p, name string, ok bool) {
	p, parts := refPath(ref, project)
	if len(parts) != 3 || parts[0] != "global" || parts[1] != kind || parts[2] == "" {
		return "", "", false
	}
	return p, parts[2], true
}

// imageRef parses global/images/<name> or global/images/family/<family>.
func imageRef(ref, project string) (p, name string, family, ok bool) {
	p, parts := refPath(ref, project)
	switch {
	case len(parts) == 3 && parts[0] == "global" && parts[1] == "images" && parts[2] != "":
		return p, parts[2], false, true
	case len(parts) == 4 && parts[0] == "global" && parts[1] == "images" && parts[2] == "family" && parts[3] != "":
		return p, parts[3], true, true
	}
	return "", "", false, false
}
