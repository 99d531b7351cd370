package openstack

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/provisionhq/provision/internal/retry"
	"github.com/provisionhq/provision/providers"
	"github.com/provisionhq/provision/providers/cloudinit"
)

// A pool batch of N > 1 machines is one servers.create with
// min_count = max_count = N. Nova gives every server of the call the same
// user_data and metadata, so:
//   - user_data is cloudinit.MultiPart: one cloud-config part per machine,
//     labelled with its launch index; cloud-init's OpenStack datasource
//     applies only the part matching the server's launch_index.
//   - metadata carries the batch name and the ordered machine-ID manifest
//     (split over keys, Nova values are at most 255 characters). Nova names
//     the servers "<batch>-1".."<batch>-N" in launch-index order, so server
//     "<batch>-i" is manifest entry i-1, readable without admin rights
//     (OS-EXT-SRV-ATTR:launch_index is admin-only by default policy).
// min_count = max_count keeps the call all-or-nothing: a smaller count
// would leave us unable to tell a server Nova did not make from one that is
// not visible yet.

const (
	metaBatch    = "provision-batch"
	metaManifest = "provision-machines" // + ".0", ".1", ... in order

	maxMetaValue = 255
	// maxMetaItems is Nova's default metadata_items quota per server.
	maxMetaItems = 128
	// maxUserData is Nova's user_data limit, counted base64-encoded.
	maxUserData = 65535
)

// machineOf returns the provision machine ID of a server: its own
// provision-machine metadata (a single create), else its entry in its
// batch's manifest; "" for a server that is not provision's.
func machineOf(s servers.Server) string {
	if id := s.Metadata[metaMachine]; id != "" {
		return id
	}
	batch := s.Metadata[metaBatch]
	if batch == "" {
		return ""
	}
	idx := -1
	if n, err := strconv.Atoi(strings.TrimPrefix(s.Name, batch+"-")); err == nil && strings.HasPrefix(s.Name, batch+"-") {
		idx = n - 1
	} else if s.LaunchIndex != nil {
		idx = *s.LaunchIndex
	}
	var all []string
	for i := 0; ; i++ {
		v, ok := s.Metadata[fmt.Sprintf("%s.%d", metaManifest, i)]
		if !ok {
			break
		}
		all = append(all, strings.Fields(v)...)
	}
	if idx < 0 || idx >= len(all) {
		return ""
	}
	return all[idx]
}

// manifestMeta splits ids over metadata keys of at most maxMetaValue
// characters each.
func manifestMeta(ids []string) map[string]string {
	out := map[string]string{}
	var cur strings.Builder
	flush := func() {
		out[fmt.Sprintf("%s.%d", metaManifest, len(out))] = cur.String()
		cur.Reset()
	}
	for _, id := range ids {
		if cur.Len() > 0 && cur.Len()+1+len(id) > maxMetaValue {
			flush()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(id)
	}
	if cur.Len() > 0 {
		flush()
	}
	return out
}

// batchName names a batch after its pool and ordered machine IDs, so a
// batch's servers are recognisable in Horizon and the name is stable.
func batchName(cluster, pool string, ids []string) string {
	h := sha256.New()
	for _, id := range ids {
		fmt.Fprintf(h, "%s\x00", id)
	}
	return fmt.Sprintf("%s-%s-%s", cluster, pool, hex.EncodeToString(h.Sum(nil))[:8])
}

// chunk is the specs (indexes into the Create batch) of one servers.create
// with their user_data.
type chunk struct {
	specs    []int
	userData []byte
}

// chunks splits a pool's missing machines into as few servers.create calls
// as Nova's user_data and metadata limits and the pool's batch size (0:
// no cap) allow: normally one. A chunk of one machine carries its own
// user-data.
func chunks(specs []providers.MachineSpec, idx []int, userData [][]byte, batchSize int) ([]chunk, error) {
	var out []chunk
	for len(idx) > 0 {
		n := len(idx)
		if batchSize > 0 {
			n = min(n, batchSize)
		}
		for {
			if n == 1 {
				if base64.StdEncoding.EncodedLen(len(userData[idx[0]])) > maxUserData {
					return nil, fmt.Errorf("%w: machine %s: user-data exceeds Nova's %d bytes", providers.ErrInvalidSpec, specs[idx[0]].ID, maxUserData)
				}
				out = append(out, chunk{specs: idx[:1], userData: userData[idx[0]]})
				break
			}
			part := make([]providers.MachineSpec, n)
			ids := make([]string, n)
			for k, i := range idx[:n] {
				part[k], ids[k] = specs[i], string(specs[i].ID)
			}
			ud, err := cloudinit.MultiPart(part)
			if err != nil {
				return nil, err
			}
			if base64.StdEncoding.EncodedLen(len(ud)) <= maxUserData && len(manifestMeta(ids))+4 <= maxMetaItems {
				out = append(out, chunk{specs: idx[:n], userData: ud})
				break
			}
			n = n * 3 / 4 // sizes are near-linear in n; shrink and retry
		}
		idx = idx[n:]
	}
	return out, nil
}

// validMachineID reports whether id can travel in a manifest value.
func validMachineID(id providers.MachineID) error {
	s := string(id)
	if len(s) > maxMetaValue || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%w: machine ID %q must be 1-%d characters without spaces", providers.ErrInvalidSpec, s, maxMetaValue)
	}
	return nil
}

// createChunk makes the servers of one chunk. When a batch is over the
// instance quota (Nova refuses min_count it cannot fit, all or nothing),
// it retries the first half as a smaller batch, then the rest, so a pool
// still gets what fits, as one create per machine would; it stops at the
// first single machine over quota. done is called for the machines whose
// create Nova accepted; failed for the others.
func (p *Provider) createChunk(ctx context.Context, c *clients, specs []providers.MachineSpec, s Settings, res resolved,
	ch chunk, userData [][]byte, done func([]int), failed func([]int, error)) (overQuota bool) {
	made, err := p.createOnce(ctx, c, specs, s, res, ch)
	if len(made) > 0 && len(made) < len(ch.specs) {
		// Only some of the chunk's machines have a server (Nova's
		// multi-create is all or nothing, so this is a cloud that broke
		// that): create the rest as chunks of their own.
		done(made)
		rest := slices.DeleteFunc(slices.Clone(ch.specs), func(i int) bool { return slices.Contains(made, i) })
		sub, cerr := chunks(specs, rest, userData, s.BatchSize)
		if cerr != nil {
			failed(rest, cerr)
			return false
		}
		for _, sc := range sub {
			if p.createChunk(ctx, c, specs, s, res, sc, userData, done, failed) {
				return true
			}
		}
		return false
	}
	if err == nil {
		done(ch.specs)
		return false
	}
	if !errors.Is(err, providers.ErrQuota) || len(ch.specs) == 1 {
		failed(ch.specs, err)
		return errors.Is(err, providers.ErrQuota)
	}
	half := (len(ch.specs) + 1) / 2
	parts := [][]int{ch.specs[:half], ch.specs[half:]}
	for pi, part := range parts {
		sub, cerr := chunks(specs, part, userData, s.BatchSize)
		if cerr != nil {
			failed(part, cerr)
			continue
		}
		for k, sc := range sub {
			if p.createChunk(ctx, c, specs, s, res, sc, userData, done, failed) {
				for _, rest := range sub[k+1:] {
					failed(rest.specs, err)
				}
				for _, rest := range parts[pi+1:] {
					failed(rest, err)
				}
				return true
			}
		}
	}
	return false
}

// createOnce makes a chunk's servers exactly once. Nova has no idempotency
// token: after a 5xx or a connection lost before the answer
// (ErrUnavailable) the create may or may not have happened, so it lists
// the chunk's machines before sending the create again, and stops when
// any has a server. made is the chunk's spec indexes that have a server,
// all of them after a create Nova answered; err is the create's failure
// when none has.
func (p *Provider) createOnce(ctx context.Context, c *clients, specs []providers.MachineSpec, s Settings, res resolved, ch chunk) (made []int, err error) {
	err = p.createServers(ctx, c, specs, s, res, ch)
	if !errors.Is(err, providers.ErrUnavailable) {
		if err == nil {
			made = ch.specs
		}
		return made, err
	}
	lost := err
	err = retry.Do(ctx, p.cfg.backoff, func(ctx context.Context) (bool, error) {
		made, err = p.madeOf(ctx, c, specs, ch.specs)
		if err != nil || len(made) > 0 {
			return true, err
		}
		p.log.Info("create answer lost and no server made: creating again", "machines", len(ch.specs), "err", lost)
		if lost = p.createServers(ctx, c, specs, s, res, ch); lost == nil {
			made = ch.specs
			return true, nil
		}
		return !errors.Is(lost, providers.ErrUnavailable), lost
	})
	return made, err
}

// madeOf returns the indexes of specs (idx, one pool's) whose machine has
// a server that is not being deleted.
func (p *Provider) madeOf(ctx context.Context, c *clients, specs []providers.MachineSpec, idx []int) ([]int, error) {
	spec0 := specs[idx[0]]
	all, err := p.listServers(ctx, c, spec0.Cluster, spec0.Pool, false)
	if err != nil {
		return nil, fmt.Errorf("look for the servers of a create whose answer was lost: %w", err)
	}
	have := map[string]bool{}
	for _, sv := range all {
		if !gone(sv) {
			have[machineOf(sv)] = true
		}
	}
	var out []int
	for _, i := range idx {
		if have[string(specs[i].ID)] {
			out = append(out, i)
		}
	}
	return out, nil
}
