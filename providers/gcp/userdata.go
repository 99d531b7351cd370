package gcp

import (
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/provisionhq/provision/providers"
)

// How a machine gets its own user-data when a batch shares one metadata
// set.
//
// bulkInsert takes one instanceProperties for the whole batch; only name
// and hostname vary per instance. Each machine's user-data differs (it
// carries that machine's own SSH host key), so a batch's shared metadata
// holds every machine's user-data under userDataPrefix+name, and the
// common "user-data" item is selectorScript: at first boot cloud-init runs
// it, it asks the metadata server for the instance's own name, and applies
// that machine's cloud-config (users, then host keys) with `cloud-init
// single`. cloudsim/gce models the same rule.
//
// The cost: every machine of a batch can read its batch peers' host keys
// from its metadata server, for as long as it runs. Those keys are only
// good for provision's first verified connection, which replaces each one
// with a key made on the machine (bootstrap.Rotator); the selector script
// removes its copy in /run/provision itself.
const userDataPrefix = "provision-user-data-" // = cloudsim/gce.UserDataPrefix

// maxBatch bounds one bulkInsert so its shared metadata (about 1.5 KB of
// user-data per machine) stays well under GCE's 512 KB metadata limit.
const maxBatch = 100

const selectorScript = `#!/bin/sh
# provision: apply this instance's own cloud-config from the batch metadata.
set -eu
md=http://metadata.google.internal/computeMetadata/v1/instance
name=$(curl -fsS -H Metadata-Flavor:Google "$md/name")
umask 077
mkdir -p /run/provision
curl -fsS -H Metadata-Flavor:Google "$md/attributes/` + userDataPrefix + `$name" >/run/provision/user-data.yaml
cloud-init --file /run/provision/user-data.yaml single --name users_groups --frequency always
cloud-init --file /run/provision/user-data.yaml single --name ssh --frequency always
systemctl restart ssh 2>/dev/null || systemctl restart sshd
rm -f /run/provision/user-data.yaml
`

// metadataFor builds the metadata of one create call: the machines' own
// user-data (one machine: directly in "user-data"; a batch: keyed by name
// with the selector), the login keys as GCE's ssh-keys (installed by the
// guest agent, also on images without cloud-init), plus the exact cluster
// and pool names (labels only hold a lowercased form).
func metadataFor(cluster, pool string, names []string, userData map[string][]byte, sshKeys string) *computepb.Metadata {
	items := []*computepb.Items{
		{Key: proto.String(metaCluster), Value: proto.String(cluster)},
		{Key: proto.String(metaPool), Value: proto.String(pool)},
	}
	if sshKeys != "" {
		items = append(items, &computepb.Items{Key: proto.String("ssh-keys"), Value: proto.String(sshKeys)})
	}
	if len(names) == 1 {
		items = append(items, &computepb.Items{Key: proto.String("user-data"), Value: proto.String(string(userData[names[0]]))})
		return &computepb.Metadata{Items: items}
	}
	items = append(items, &computepb.Items{Key: proto.String("user-data"), Value: proto.String(selectorScript)})
	for _, n := range names {
		items = append(items, &computepb.Items{Key: proto.String(userDataPrefix + n), Value: proto.String(string(userData[n]))})
	}
	return &computepb.Metadata{Items: items}
}

// sshKeys is the ssh-keys metadata value for a spec's login: one
// "user:ssh-ed25519 AAAA... comment" line per authorized key.
func sshKeys(s providers.MachineSpec) string {
	if s.SSHUser == "" {
		return ""
	}
	var lines []string
	for _, k := range s.AuthorizedKeys {
		if k = strings.TrimSpace(k); k != "" {
			lines = append(lines, s.SSHUser+":"+k)
		}
	}
	return strings.Join(lines, "\n")
}

const (
	metaCluster = "provision-cluster"
	metaPool    = "provision-pool"
)

func metadataValue(in *computepb.Instance, key string) string {
	for _, it := range in.GetMetadata().GetItems() {
		if it.GetKey() == key {
			return it.GetValue()
		}
	}
	return ""
}
