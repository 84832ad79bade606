package dm

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// mgmt.firmware.state values (protocol.md §7.7).
const (
	fwIdle        = 0
	fwDownloading = 1
	fwDownloaded  = 2
)

// mgmt.firmware.updateStatus values (protocol.md §7.7).
const (
	fwSuccess            = 0
	fwInProgress         = 1
	fwOutOfMemory        = 2
	fwConnectionLost     = 3
	fwVerificationFailed = 4
	fwUnsupportedImage   = 5
	fwInvalidURI         = 6
)

// firmwareState is a device's mgmt.firmware: what the platform staged and
// where the download and install stand.
type firmwareState struct {
	Version         string `json:"version"`
	Name            string `json:"name"`
	URI             string `json:"uri"`
	Verifier        string `json:"verifier"`
	State           int    `json:"state"`
	UpdateStatus    int    `json:"updateStatus"`
	UpdatedDateTime string `json:"updatedDateTime"`
	file            string // the downloaded image, when State is fwDownloaded
}

// commandPayload is what an install command (a register sequence) gets:
// {"d":{"version","name","uri","verifier","file"}}, so that its writes can
// take e.g. the version with value = "$.d.version".
func (f firmwareState) commandPayload() []byte {
	b, _ := json.Marshal(map[string]any{"d": map[string]string{
		"version": f.Version, "name": f.Name, "uri": f.URI, "verifier": f.Verifier, "file": f.file}})
	return b // cannot fail
}

// value is the mgmt.firmware object as observe and notify report it.
func (f firmwareState) value() any {
	type out struct {
		Version         string `json:"version,omitempty"`
		Name            string `json:"name,omitempty"`
		URI             string `json:"uri,omitempty"`
		Verifier        string `json:"verifier,omitempty"`
		State           int    `json:"state"`
		UpdateStatus    int    `json:"updateStatus"`
		UpdatedDateTime string `json:"updatedDateTime,omitempty"`
	}
	return out{f.Version, f.Name, f.URI, f.Verifier, f.State, f.UpdateStatus, f.UpdatedDateTime}
}

func (f firmwareState) attribute(name string) (any, bool) {
	switch name {
	case "version":
		return f.Version, true
	case "name":
		return f.Name, true
	case "uri":
		return f.URI, true
	case "verifier":
		return f.Verifier, true
	case "updatedDateTime":
		return f.UpdatedDateTime, true
	}
	return nil, false
}

// stage takes what the platform staged; state and updateStatus stay the
// device's own (it reports them, the platform does not set them).
func (f *firmwareState) stage(st firmwareState) {
	f.Version, f.Name, f.URI, f.Verifier = st.Version, st.Name, st.URI, st.Verifier
}

// checkVerifier accepts "" (not staged yet) or an MD5 or SHA-256 digest in hex.
func checkVerifier(v string) error {
	if v == "" {
		return nil
	}
	if _, err := hex.DecodeString(v); err != nil || (len(v) != 2*md5.Size && len(v) != 2*sha256.Size) {
		return errors.New("verifier must be an MD5 or SHA-256 digest in hex")
	}
	return nil
}

// startDownload answers firmware/download (protocol.md §7.7): rc 501 when
// the device has no firmware actions, rc 400 when the state is not idle or
// the URI or verifier is missing or unusable, else rc 202 and the download
// runs in the background, reporting state 1 then 2 (or 0 with the
// updateStatus of the failure) through notify.
func (a *Agent) startDownload(ctx context.Context, d *device) response {
	if d.cfg.Firmware == nil {
		return response{RC: RCNotSupported, Message: "firmware actions are not supported by this device"}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fw := d.fw
	switch {
	case d.fwBusy || fw.State != fwIdle:
		return response{RC: RCBadRequest, Message: fmt.Sprintf("firmware state is %d, not 0 (idle)", fw.State)}
	case fw.Verifier == "":
		return response{RC: RCBadRequest, Message: "no verifier staged: the agent installs only verified images"}
	}
	if err := a.checkURI(fw.URI); err != nil {
		return response{RC: RCBadRequest, Message: err.Error()}
	}
	d.fwBusy = true
	// A new attempt starts clean: the failure status of an earlier one is
	// not this download's.
	d.fw.State, d.fw.UpdateStatus = fwDownloading, fwSuccess
	fw = d.fw
	return response{RC: RCAccepted, then: func(ctx context.Context) { a.download(ctx, d, fw) }}
}

func (a *Agent) checkURI(raw string) error {
	if raw == "" {
		return errors.New("no firmware uri staged")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		return fmt.Errorf("firmware uri %q is not a URL", short(raw))
	case u.Scheme == "https":
	case u.Scheme == "http" && a.cfg.AllowHTTP:
	default:
		return fmt.Errorf("firmware uri %q: only https is allowed", short(raw))
	}
	return nil
}

// download fetches the image into the staging directory and checks it. It
// runs once the rc 202 is sent, so the notifies follow it.
func (a *Agent) download(ctx context.Context, d *device, fw firmwareState) {
	a.notify(ctx, d, "mgmt.firmware", "mgmt.firmware.state")
	file, status, err := a.fetch(ctx, d, fw)
	d.mu.Lock()
	d.fwBusy = false
	if err != nil {
		d.fw.State, d.fw.UpdateStatus = fwIdle, status
	} else {
		d.fw.State, d.fw.UpdateStatus, d.fw.file = fwDownloaded, fwSuccess, file
	}
	d.mu.Unlock()
	if err != nil {
		a.log.Warn("firmware download failed", "device", d.cfg.ID, "uri", fw.URI, "update_status", status, "err", err)
		d.log(logError, "firmware download failed: "+err.Error())
	} else {
		a.log.Info("firmware downloaded", "device", d.cfg.ID, "version", fw.Version, "file", file)
		d.log(logInfo, "firmware "+fw.Version+" downloaded")
	}
	a.notify(ctx, d, "mgmt.firmware", "mgmt.firmware.state", "mgmt.firmware.updateStatus")
}

// fetch downloads fw.URI to the staging directory, bounded in size and
// time, and checks the verifier. On failure it returns the updateStatus
// that says why.
func (a *Agent) fetch(ctx context.Context, d *device, fw firmwareState) (string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.DownloadTimeout)
	defer cancel()
	if err := os.MkdirAll(a.cfg.StagingDir, 0o750); err != nil {
		return "", fwOutOfMemory, fmt.Errorf("staging directory: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fw.URI, nil)
	if err != nil {
		return "", fwInvalidURI, err
	}
	client := a.cfg.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fwInvalidURI, fmt.Errorf("get %s: %v", fw.URI, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fwInvalidURI, fmt.Errorf("get %s: %s", fw.URI, resp.Status)
	}
	if resp.ContentLength > a.cfg.MaxFirmwareBytes {
		return "", fwOutOfMemory, fmt.Errorf("image is %d bytes, more than the limit of %d", resp.ContentLength, a.cfg.MaxFirmwareBytes)
	}
	final := filepath.Join(a.cfg.StagingDir, safeFileName(d.cfg.Type+"_"+d.cfg.ID)+".fw")
	tmp, err := os.CreateTemp(a.cfg.StagingDir, ".download-*")
	if err != nil {
		return "", fwOutOfMemory, fmt.Errorf("staging file: %v", err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	var h hash.Hash = sha256.New()
	if len(fw.Verifier) == 2*md5.Size {
		h = md5.New()
	}
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, a.cfg.MaxFirmwareBytes+1))
	if cerr := tmp.Close(); err == nil && cerr != nil {
		return "", fwOutOfMemory, fmt.Errorf("staging file: %v", cerr)
	}
	switch {
	case err != nil && isWriteError(err):
		return "", fwOutOfMemory, fmt.Errorf("staging file: %v", err) // a full disk, most likely
	case err != nil:
		return "", fwConnectionLost, fmt.Errorf("download interrupted after %d bytes: %v", n, err)
	case n > a.cfg.MaxFirmwareBytes:
		return "", fwOutOfMemory, fmt.Errorf("image is more than the limit of %d bytes", a.cfg.MaxFirmwareBytes)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, fw.Verifier) {
		return "", fwVerificationFailed, fmt.Errorf("image digest %s does not match the verifier %s", got, fw.Verifier)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fwOutOfMemory, fmt.Errorf("staging file: %v", err)
	}
	return final, fwSuccess, nil
}

func isWriteError(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe)
}

// safeFileName keeps letters, digits, '-', '_' and '.'.
func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, s)
}

// startInstall answers firmware/update (protocol.md §7.7): rc 501 without
// firmware actions, rc 400 when no image is downloaded (state ≠ 2), else
// rc 202 and the install hook runs in the background: updateStatus 1, then
// state 0 and updateStatus 0 in one notify on success (deviceInfo.fwVersion
// becomes the version, Manage is sent again to tell the platform), or
// updateStatus 5 when the hook failed.
func (a *Agent) startInstall(ctx context.Context, d *device) response {
	if d.cfg.Firmware == nil {
		return response{RC: RCNotSupported, Message: "firmware actions are not supported by this device"}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fwBusy || d.fw.State != fwDownloaded {
		return response{RC: RCBadRequest, Message: fmt.Sprintf("firmware state is %d, not 2 (downloaded)", d.fw.State)}
	}
	d.fwBusy = true
	d.fw.UpdateStatus = fwInProgress
	fw := d.fw
	return response{RC: RCAccepted, then: func(ctx context.Context) { a.install(ctx, d, fw) }}
}

func (a *Agent) install(ctx context.Context, d *device, fw firmwareState) {
	a.notify(ctx, d, "mgmt.firmware", "mgmt.firmware.updateStatus")
	vars := map[string]string{"file": fw.file, "version": fw.Version, "name": fw.Name}
	err := a.run(ctx, d, &d.cfg.Firmware.Install, fw.commandPayload(), vars)
	d.mu.Lock()
	d.fwBusy = false
	if err != nil {
		d.fw.UpdateStatus = fwUnsupportedImage
	} else {
		d.fw.State, d.fw.UpdateStatus, d.fw.file = fwIdle, fwSuccess, ""
		d.fw.UpdatedDateTime = time.Now().UTC().Format(time.RFC3339)
		if d.info == nil {
			d.info = map[string]string{}
		}
		d.info["fwVersion"] = fw.Version
		d.needManage = true
	}
	d.mu.Unlock()
	if err != nil {
		a.log.Warn("firmware install failed", "device", d.cfg.ID, "version", fw.Version, "err", err)
		d.log(logError, "firmware install failed: "+err.Error())
		a.notify(ctx, d, "mgmt.firmware", "mgmt.firmware.updateStatus")
		return
	}
	os.Remove(fw.file)
	a.log.Info("firmware installed", "device", d.cfg.ID, "version", fw.Version)
	d.log(logInfo, "firmware "+fw.Version+" installed")
	a.notify(ctx, d, "mgmt.firmware", "mgmt.firmware.state", "mgmt.firmware.updateStatus", "deviceInfo", "deviceInfo.fwVersion")
}
