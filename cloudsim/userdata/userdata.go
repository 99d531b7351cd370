// Package userdata reads an instance's user-data the way cloud-init on a
// real VM would, so that cloudsim can give a backing host what the guest
// would apply. It deliberately shares no code with providers/cloudinit (the
// writer): an emulator that decoded with the client's own code would mirror
// any format bug, and every test would stay green.
//
// The formats follow cloud-init's documentation ("User data formats",
// https://cloudinit.readthedocs.io/en/latest/explanation/format.html and
// .../explanation/format/mime.html, gzip.html) and its behaviour:
//   - gzip: data starting with the gzip magic is inflated, then read as if
//     it had not been compressed (top level, and application/gzip parts);
//   - MIME multi-part ("Content-Type: multipart/..."): each part is read by
//     its content type (text/cloud-config, text/x-shellscript and its
//     per-boot/per-instance/per-once variants, text/plain or
//     application/octet-stream by their first line, nested multipart);
//   - launch index (cloudinit/filters/launch_index.py; the "Amazon EC2
//     launch index" example): when the datasource has one (EC2
//     ami-launch-index, OpenStack launch_index), a part or message with a
//     Launch-Index header, or a cloud-config with a launch-index key, is
//     used only by the instance of that index; parts without one are used
//     by every instance. GCE has none: nothing is filtered;
//   - "#cloud-config": YAML; several parts merge with cloud-init's
//     default for user-data, dict(replace)+list()+str()
//     (cloudinit/handlers/cloud_config.py; reference/merging.html): a later
//     part's keys replace an earlier one's, dictionaries merge key by key;
//   - "#!": a user-data script, kept in order.
//
// Formats provision never sends (#include, boothooks, part handlers,
// jinja, cloud-config-archive, merge_how) are refused with ErrUnsupported
// rather than half-modelled.
package userdata

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// NoLaunchIndex is the launch index of an instance whose datasource has
// none (GCE): cloud-init then filters nothing.
const NoLaunchIndex = -1

var (
	// ErrUnsupported: the user-data uses a cloud-init format this decoder
	// does not model.
	ErrUnsupported = errors.New("user-data format not modelled by cloudsim")
	// ErrMalformed: cloud-init could not read the user-data either.
	ErrMalformed = errors.New("malformed user-data")
)

// maxInflated bounds what gzip may inflate to: clouds cap user-data at
// 16-64 KiB, so more is a bomb, not user-data.
const maxInflated = 1 << 20

// maxDepth bounds nested multipart and gzip-in-multipart.
const maxDepth = 5

// Decode returns what cloud-init on the instance with the given launch
// index (NoLaunchIndex when the cloud has none) would apply from data.
// Empty user-data is an empty Config.
func Decode(data []byte, launchIndex int) (*Config, error) {
	d := &decoder{index: launchIndex, merged: map[string]any{}}
	if err := d.payload(data, 0); err != nil {
		return nil, err
	}
	c, err := fromMap(d.merged)
	if err != nil {
		return nil, err
	}
	c.Scripts = d.scripts
	return c, nil
}

type decoder struct {
	index   int
	merged  map[string]any
	scripts [][]byte
}

// payload reads user-data that is not (or no longer) inside a MIME part.
func (d *decoder) payload(data []byte, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested more than %d deep", ErrMalformed, maxDepth)
	}
	if isGzip(data) {
		raw, err := gunzip(data)
		if err != nil {
			return err
		}
		return d.payload(raw, depth+1)
	}
	return d.typed(sniff(data), data, nil, depth)
}

// typed handles one payload of a known content type.
func (d *decoder) typed(ctype string, data []byte, h textproto.MIMEHeader, depth int) error {
	switch {
	case ctype == "" && len(bytes.TrimSpace(data)) == 0:
		return nil
	case ctype == "text/cloud-config":
		return d.cloudConfig(data, h)
	case ctype == "text/x-shellscript" || strings.HasPrefix(ctype, "text/x-shellscript-per-"):
		d.scripts = append(d.scripts, data)
		return nil
	case strings.HasPrefix(ctype, "multipart/"):
		return d.multipart(data, depth)
	case ctype == "text/plain" || ctype == "application/octet-stream":
		if s := sniff(data); s != "text/plain" {
			return d.typed(s, data, h, depth)
		}
		// cloud-init ignores text it cannot type; provision never sends it.
		return fmt.Errorf("%w: untyped text part %.20q", ErrUnsupported, data)
	case gzipTypes[ctype]:
		raw, err := gunzip(data)
		if err != nil {
			return err
		}
		return d.payload(raw, depth+1)
	default:
		return fmt.Errorf("%w: content type %q", ErrUnsupported, ctype)
	}
}

// sniff types a payload by its start, as cloud-init's "starts with" rules
// do for data that is not in a typed MIME part.
func sniff(data []byte) string {
	s := string(bytes.TrimLeft(data, " \t\r\n"))
	lower := strings.ToLower(s)
	switch {
	case s == "":
		return ""
	case strings.HasPrefix(lower, "content-type:"), strings.HasPrefix(lower, "mime-version:"):
		return "multipart/mixed" // a MIME message; multipart reads its own header
	case strings.HasPrefix(s, "#cloud-config-archive"), strings.HasPrefix(s, "#cloud-config-jsonp"):
		return "text/cloud-config-archive"
	case strings.HasPrefix(s, "#cloud-config"):
		return "text/cloud-config"
	case strings.HasPrefix(s, "#!"):
		return "text/x-shellscript"
	case strings.HasPrefix(s, "#include"):
		return "text/x-include-url"
	case strings.HasPrefix(s, "#cloud-boothook"):
		return "text/cloud-boothook"
	case strings.HasPrefix(s, "#part-handler"):
		return "text/part-handler"
	case strings.HasPrefix(lower, "## template: jinja"):
		return "text/jinja2"
	}
	return "text/plain"
}

var gzipTypes = map[string]bool{
	"application/gzip": true, "application/x-gzip": true, "application/gzip-compressed": true,
	"application/gzipped": true, "application/x-gzip-compressed": true, "application/x-gunzip": true,
}

func isGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

func gunzip(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, maxInflated+1))
	if err != nil {
		return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
	}
	if len(raw) > maxInflated {
		return nil, fmt.Errorf("%w: gzip inflates past %d bytes", ErrMalformed, maxInflated)
	}
	return raw, nil
}

// multipart reads a MIME message: its header, then its parts in order.
func (d *decoder) multipart(data []byte, depth int) error {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return fmt.Errorf("%w: MIME header: %v", ErrMalformed, err)
	}
	if !d.wanted(h.Get("Launch-Index")) {
		return nil
	}
	if err := refuseMergeType(h); err != nil {
		return err
	}
	ctype, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("%w: Content-Type: %v", ErrMalformed, err)
	}
	if !strings.HasPrefix(ctype, "multipart/") {
		// A single-part MIME message: its body is one typed payload.
		body, err := decodeTransfer(tp.R, h)
		if err != nil {
			return err
		}
		return d.typed(ctype, body, h, depth+1)
	}
	if params["boundary"] == "" {
		return fmt.Errorf("%w: multipart without a boundary", ErrMalformed)
	}
	mr := multipart.NewReader(tp.R, params["boundary"])
	for n := 1; ; n++ {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: MIME part %d: %v", ErrMalformed, n, err)
		}
		if !d.wanted(part.Header.Get("Launch-Index")) {
			continue
		}
		if err := refuseMergeType(part.Header); err != nil {
			return err
		}
		body, err := decodeTransfer(part, part.Header)
		if err != nil {
			return fmt.Errorf("MIME part %d: %w", n, err)
		}
		ct := "text/plain" // MIME's default for a part without a type
		if v := part.Header.Get("Content-Type"); v != "" {
			if ct, _, err = mime.ParseMediaType(v); err != nil {
				return fmt.Errorf("%w: MIME part %d: Content-Type: %v", ErrMalformed, n, err)
			}
		}
		if strings.HasPrefix(ct, "multipart/") {
			// A nested multipart needs its own header to find its boundary.
			body = append([]byte("Content-Type: "+part.Header.Get("Content-Type")+"\r\n\r\n"), body...)
		}
		if err := d.typed(ct, body, part.Header, depth+1); err != nil {
			return fmt.Errorf("MIME part %d: %w", n, err)
		}
	}
}

// wanted is cloud-init's launch-index filter for one header value: no
// value or no instance index keeps the part; otherwise the integer must
// match (a non-integer never does).
func (d *decoder) wanted(li string) bool {
	li = strings.TrimSpace(li)
	if li == "" || d.index == NoLaunchIndex {
		return true
	}
	n, err := strconv.Atoi(li)
	return err == nil && n == d.index
}

func refuseMergeType(h textproto.MIMEHeader) error {
	if h.Get("Merge-Type") != "" || h.Get("X-Merge-Type") != "" {
		return fmt.Errorf("%w: Merge-Type header", ErrUnsupported)
	}
	return nil
}

func decodeTransfer(r io.Reader, h textproto.MIMEHeader) ([]byte, error) {
	switch enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); enc {
	case "", "7bit", "8bit", "binary":
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, newlineStripper{r})
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	default:
		return nil, fmt.Errorf("%w: Content-Transfer-Encoding %q", ErrMalformed, enc)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxInflated+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(b) > maxInflated {
		return nil, fmt.Errorf("%w: part larger than %d bytes", ErrMalformed, maxInflated)
	}
	return b, nil
}

// newlineStripper drops line breaks, which base64 bodies carry every 76
// characters and the base64 decoder refuses.
type newlineStripper struct{ r io.Reader }

func (s newlineStripper) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	out := p[:0]
	for _, c := range p[:n] {
		if c != '\r' && c != '\n' {
			out = append(out, c)
		}
	}
	return len(out), err
}

// cloudConfig merges one #cloud-config document into what came before.
func (d *decoder) cloudConfig(data []byte, h textproto.MIMEHeader) error {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%w: cloud-config YAML: %v", ErrMalformed, err)
	}
	if doc == nil {
		return nil
	}
	if _, ok := doc["merge_how"]; ok {
		return fmt.Errorf("%w: merge_how", ErrUnsupported)
	}
	if _, ok := doc["merge_type"]; ok {
		return fmt.Errorf("%w: merge_type", ErrUnsupported)
	}
	// A launch-index key acts as the part's Launch-Index header when it has
	// none (cloud-init's user_data.py); a non-integer key is ignored.
	if h.Get("Launch-Index") == "" {
		if n, ok := doc["launch-index"].(int); ok && !d.wanted(strconv.Itoa(n)) {
			return nil
		}
	}
	mergeReplace(d.merged, doc)
	return nil
}

// mergeReplace is cloud-init's dict(replace): src's keys replace dst's,
// except that two dictionaries merge key by key.
func mergeReplace(dst, src map[string]any) {
	for k, v := range src {
		if sub, ok := v.(map[string]any); ok {
			if old, ok := dst[k].(map[string]any); ok {
				mergeReplace(old, sub)
				continue
			}
		}
		dst[k] = v
	}
}
