package ec2

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strconv"
	"strings"
)

// UserDataFor returns the cloud-config that cloud-init on the instance with
// the given launch index would apply, from the user-data of its launch:
// gzip is undone, and in a MIME multipart document the text/cloud-config
// part whose Launch-Index header equals the instance's ami-launch-index
// wins over a part without one (cloud-init's launch-index filter). Other
// user-data is returned as it is. A Backing gets this, as a VM would.
func UserDataFor(userData []byte, launchIndex int) ([]byte, error) {
	if len(userData) >= 2 && userData[0] == 0x1f && userData[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(userData))
		if err != nil {
			return nil, fmt.Errorf("user-data: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(zr, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("user-data: gunzip: %w", err)
		}
		userData = b
	}
	if !bytes.HasPrefix(bytes.ToLower(userData), []byte("content-type: multipart/")) {
		return userData, nil
	}
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(userData)))
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("user-data: MIME header: %w", err)
	}
	_, params, err := mime.ParseMediaType(hdr.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return nil, fmt.Errorf("user-data: multipart without a boundary")
	}
	mr := multipart.NewReader(tp.R, params["boundary"])
	var shared []byte
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("user-data: MIME part: %w", err)
		}
		ct, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		body, err := io.ReadAll(part)
		if err != nil {
			return nil, fmt.Errorf("user-data: MIME part: %w", err)
		}
		if ct != "text/cloud-config" {
			continue
		}
		li := strings.TrimSpace(part.Header.Get("Launch-Index"))
		switch {
		case li == "":
			if shared == nil {
				shared = body
			}
		case li == strconv.Itoa(launchIndex):
			return body, nil
		}
	}
	if shared == nil {
		return nil, fmt.Errorf("user-data: no cloud-config for launch index %d", launchIndex)
	}
	return shared, nil
}
