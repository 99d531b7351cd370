package aws

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/provisionhq/provision/providers"
)

// One RunInstances call launches a whole batch, and EC2 gives every
// instance of a call the same user-data and the same tags. Two things are
// per machine, though: the provision machine ID and the SSH host key. This
// file holds how both travel in one call:
//
//   - Host keys: the user-data is cloudinit.MultiPart, a gzipped MIME
//     multipart document with one text/cloud-config part per machine, each
//     carrying a "Launch-Index: i" header. cloud-init's EC2 datasource keeps
//     only the parts whose Launch-Index equals the instance's
//     ami-launch-index (a documented cloud-init feature), so instance i
//     configures machine i's host key and nothing else. Trade-off: IMDS
//     serves the whole user-data to every instance of the batch, so root on
//     one machine can read its batch siblings' private host keys. Siblings
//     share a pool, a cluster and its login keys, so this widens no trust
//     boundary; a pool that wants strict per-machine secrecy sets
//     batch_size 1 (one call per machine).
//   - Machine IDs: every instance gets the same tags, including the batch's
//     ordered machine ID list (the "manifest", split over tags of at most
//     256 characters); instance i is the machine at position
//     AmiLaunchIndex in that list. No per-instance CreateTags call is needed.

const (
	tagCluster  = "provision:cluster"
	tagPool     = "provision:pool"
	tagBatch    = "provision:batch"
	tagManifest = "provision:machines" // + ".0", ".1", ... in order

	maxTagValue   = 256
	maxTags       = 50    // EC2's limit per resource
	maxUserData   = 16384 // EC2's limit on raw (pre-base64) user-data
	maxGeneration = 8
)

// batchToken is the RunInstances ClientToken of a batch: deterministic in
// the region, cluster, pool and set of machine IDs (in any order: the next
// process may batch them in another), so a retry after a lost response (in
// this process or the next) returns the same reservation.
// EC2 keeps a token at least 24 h after its instances are terminated, so
// relaunching the same IDs after a delete moves on to the next generation.
func batchToken(region, cluster, pool string, ids []providers.MachineID, generation int) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s", region, cluster, pool)
	for _, id := range slices.Sorted(slices.Values(ids)) {
		fmt.Fprintf(h, "\x00%s", id)
	}
	tok := "provision-" + hex.EncodeToString(h.Sum(nil))[:40]
	if generation > 0 {
		tok += "-g" + strconv.Itoa(generation)
	}
	return tok // at most 53 ASCII characters; EC2 allows 64
}

// manifestTags splits the batch's ordered machine IDs over as many tags as
// needed, each value at most 256 characters.
func manifestTags(ids []providers.MachineID) []types.Tag {
	var tags []types.Tag
	var cur strings.Builder
	flush := func() {
		k, v := fmt.Sprintf("%s.%d", tagManifest, len(tags)), cur.String()
		tags = append(tags, types.Tag{Key: &k, Value: &v})
		cur.Reset()
	}
	for _, id := range ids {
		if cur.Len() > 0 && cur.Len()+1+len(id) > maxTagValue {
			flush()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(string(id))
	}
	if cur.Len() > 0 {
		flush()
	}
	return tags
}

// machineIDOf resolves an instance's provision machine ID from its batch
// manifest and launch index; "" when the instance carries no manifest.
func machineIDOf(tags map[string]string, launchIndex int) providers.MachineID {
	var all []string
	for i := 0; ; i++ {
		v, ok := tags[fmt.Sprintf("%s.%d", tagManifest, i)]
		if !ok {
			break
		}
		all = append(all, strings.Fields(v)...)
	}
	if launchIndex < 0 || launchIndex >= len(all) {
		return ""
	}
	return providers.MachineID(all[launchIndex])
}

// validMachineID reports whether id can travel in a manifest tag.
func validMachineID(id providers.MachineID) error {
	s := string(id)
	if s == "" || len(s) > maxTagValue || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%w: machine ID %q must be 1-256 characters without spaces", providers.ErrInvalidSpec, s)
	}
	return nil
}
