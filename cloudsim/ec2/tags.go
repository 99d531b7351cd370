package ec2

import (
	"net/url"
	"strings"
)

// tagsLocked finds the tags of a taggable resource of the region by ID:
// an instance, security group, VPC, subnet or key pair.
func (s *Server) tagsLocked(reg region, id string) (map[string]string, *apiError) {
	prefix, _, _ := strings.Cut(id, "-")
	switch prefix {
	case "i":
		if in, ok := s.instances[id]; ok && in.region == reg.name && !s.now().Before(in.visibleAt) {
			return in.tags, nil
		}
		return nil, errClient("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	case "sg":
		g, err := s.groupLocked(reg, id)
		if err != nil {
			return nil, err
		}
		return g.tags, nil
	case "vpc":
		if v := s.netLocked(reg).vpc; v.id == id {
			return v.tags, nil
		}
		return nil, errClient("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
	case "subnet":
		if sn, ok := s.subnetLocked(reg, id); ok {
			return sn.tags, nil
		}
		return nil, errClient("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
	case "key":
		if k, ok := s.keys[id]; ok && k.region == reg.name {
			return k.tags, nil
		}
		return nil, errClient("InvalidKeyPairId.NotFound", "The key pair ID '%s' does not exist", id)
	}
	return nil, errClient("InvalidID", "The ID '%s' is not valid", id)
}

// resourceTags reads ResourceId.N and Tag.N.Key/Value.
func resourceTags(f url.Values) ([]string, []url.Values, *apiError) {
	ids := indexed(f, "ResourceId")
	if len(ids) == 0 {
		return nil, nil, errClient("MissingParameter", "The request must contain the parameter resourceIdSet")
	}
	return ids, indexedGroups(f, "Tag"), nil
}

func (s *Server) createTags(q *request) (response, *apiError) {
	ids, tags, err := resourceTags(q.form)
	if err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		return nil, errClient("MissingParameter", "The request must contain the parameter tagSet")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var sets []map[string]string
	for _, id := range ids {
		m, err := s.tagsLocked(q.region, id)
		if err != nil {
			return nil, err
		}
		added := 0
		for _, t := range tags {
			if _, ok := m[t.Get("Key")]; !ok {
				added++
			}
		}
		if len(m)+added > 50 {
			return nil, errClient("TagLimitExceeded", "The maximum number of tags per resource is 50")
		}
		sets = append(sets, m)
	}
	for _, m := range sets {
		for _, t := range tags {
			m[t.Get("Key")] = t.Get("Value")
		}
	}
	return &xmlReturnResponse{Return: true}, nil
}

// deleteTags removes the named tags (only where the value matches, when a
// value is given), or every tag when none is named.
func (s *Server) deleteTags(q *request) (response, *apiError) {
	ids, tags, err := resourceTags(q.form)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var sets []map[string]string
	for _, id := range ids {
		m, err := s.tagsLocked(q.region, id)
		if err != nil {
			return nil, err
		}
		sets = append(sets, m)
	}
	for _, m := range sets {
		if len(tags) == 0 {
			clear(m)
		}
		for _, t := range tags {
			k := t.Get("Key")
			if v, ok := t["Value"]; ok && m[k] != v[0] {
				continue
			}
			delete(m, k)
		}
	}
	return &xmlReturnResponse{Return: true}, nil
}
