package cloudinit

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"strconv"

	"github.com/provisionhq/provision/providers"
)

// Batch user-data. A cloud batch call (EC2 RunInstances with MinCount, Nova
// servers.create with min_count) gives every instance of the call the same
// user-data, but each machine needs its own SSH host key. MultiPart renders
// a gzipped MIME multipart document with one text/cloud-config part per
// machine, each with a "Launch-Index: i" header; cloud-init's EC2 and
// OpenStack datasources keep only the parts whose Launch-Index equals the
// instance's launch index (ami-launch-index / launch_index), so instance i
// configures machine i's host key and nothing else. This package only
// writes: cloudsim/userdata reads it back, independently, as cloud-init.
//
// The metadata service serves the whole document to every instance of the
// batch, for as long as they run, so one machine can read its siblings'
// private host keys. That is why these keys are only good for provision's
// first verified connection: over it the engine has each machine make a
// fresh key of its own (bootstrap.Rotator, plans/apply), and the keys in
// this document open nothing any more.

// mimeBoundary is fixed so the output is deterministic (EC2's idempotency
// token covers the user-data); it cannot occur in a YAML cloud-config.
const mimeBoundary = "==provision-batch=="

// MultiPart renders the user-data of a batch: spec i is launch index i. The
// output is deterministic. It holds private host keys: never log it.
func MultiPart(specs []providers.MachineSpec) ([]byte, error) {
	var doc bytes.Buffer
	fmt.Fprintf(&doc, "Content-Type: multipart/mixed; boundary=%q\r\nMIME-Version: 1.0\r\n\r\n", mimeBoundary)
	w := multipart.NewWriter(&doc)
	if err := w.SetBoundary(mimeBoundary); err != nil {
		return nil, fmt.Errorf("batch user-data: %w", err)
	}
	for i, spec := range specs {
		cc, err := UserData(spec)
		if err != nil {
			return nil, err
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", `text/cloud-config; charset="us-ascii"`)
		h.Set("MIME-Version", "1.0")
		h.Set("Content-Transfer-Encoding", "7bit")
		h.Set("Launch-Index", strconv.Itoa(i))
		part, err := w.CreatePart(h)
		if err != nil {
			return nil, fmt.Errorf("batch user-data: part %d: %w", i, err)
		}
		if _, err := part.Write(cc); err != nil {
			return nil, fmt.Errorf("batch user-data: part %d: %w", i, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("batch user-data: %w", err)
	}
	// cloud-init detects gzip by its magic bytes. The zero gzip header
	// (no name, no mtime) keeps the output deterministic.
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("batch user-data: gzip: %w", err)
	}
	if _, err := zw.Write(doc.Bytes()); err != nil {
		return nil, fmt.Errorf("batch user-data: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("batch user-data: gzip: %w", err)
	}
	return gz.Bytes(), nil
}
