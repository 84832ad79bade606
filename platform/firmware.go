package platform

import (
	"context"
	"encoding/json"
	"fmt"
)

// FirmwareSpec is what a firmware action stages in mgmt.firmware before it
// starts (protocol.md §7.7: the REST parameters uri, verifier, name and
// version, all optional). A zero spec stages nothing.
type FirmwareSpec struct {
	URI, Verifier, Name, Version string
}

// FirmwareStatus is mgmt.firmware's state and updateStatus.
type FirmwareStatus struct {
	State, UpdateStatus int
}

// FirmwareResult is what happened in one firmware action, step by step, so
// that tests can assert on the device's answers and transitions. An rc of 0
// means the step was not reached.
type FirmwareResult struct {
	Action     string // firmware/download or firmware/update
	UpdateRC   int    // the staging device/update (204 expected); 0 also when the spec was zero
	ObserveRC  int    // observe mgmt.firmware (200 expected)
	InitiateRC int    // mgmt/initiate/firmware/download or update (202 expected)
	// InitiateMessage is the message of the device's answer to the initiate request.
	InitiateMessage string
	// Transitions is mgmt.firmware's state and updateStatus after each
	// notify the device sent after the initiate request, in order.
	Transitions []FirmwareStatus
	CancelRC    int  // cancel mgmt.firmware at the end (200 expected)
	Succeeded   bool // download: state 2 reached; update: updateStatus 0 after the install began
	// Message says where and why the action stopped, in words.
	Message string
}

// FirmwareDownload runs the download sequence of protocol.md §7.7 (rule D5)
// against the managed device typ/id, which must have advertised
// firmwareActions: stage spec with device/update (204) unless spec is
// zero, observe mgmt.firmware (200), initiate the download (202), wait for
// notifies until state 2 (downloaded) or a failure (state 0 with
// updateStatus 2, 3, 4 or 6, or state 0 after 1), then cancel the
// observation (200). A device answer off the sequence ends it there, and
// after a successful observe the observation is cancelled in any case (the
// spec only shows the cancel after success; cleaning up is this package's
// choice). The protocol outcome is in the result; the error is for what
// prevented the exchange: not managed or capable (ErrNotManaged,
// ErrUnsupportedAction), another firmware action running (ErrBusy), ctx,
// Close, or a response that did not decode.
func (p *Platform) FirmwareDownload(ctx context.Context, typ, id string, spec FirmwareSpec) (FirmwareResult, error) {
	return p.firmwareAction(ctx, typ, id, "firmware/download", spec)
}

// FirmwareUpdate runs the update sequence of protocol.md §7.7 like
// FirmwareDownload: optional staging, observe, initiate the update (202;
// the device answers 400 when nothing is downloaded), wait for notifies
// until updateStatus 0 (success; state and updateStatus reported together)
// or a failure (updateStatus 2 to 6), cancel.
func (p *Platform) FirmwareUpdate(ctx context.Context, typ, id string, spec FirmwareSpec) (FirmwareResult, error) {
	return p.firmwareAction(ctx, typ, id, "firmware/update", spec)
}

func (p *Platform) firmwareAction(ctx context.Context, typ, id, action string, spec FirmwareSpec) (FirmwareResult, error) {
	r := FirmwareResult{Action: action}
	key, err := p.dmTarget(typ, id, "firmwareActions")
	if err != nil {
		return r, err
	}
	watch, ok := p.dm.watchFirmware(key)
	if !ok {
		return r, fmt.Errorf("%w: %s/%s", ErrBusy, typ, id)
	}
	defer p.dm.unwatchFirmware(key)

	if spec != (FirmwareSpec{}) {
		resp, err := p.UpdateAttributes(ctx, typ, id, []Field{spec.field()})
		if err != nil {
			return r, err
		}
		if r.UpdateRC = resp.RC; resp.RC != RCChanged {
			r.Message = fmt.Sprintf("device refused the staged firmware: rc %d %s", resp.RC, resp.Message)
			return r, nil
		}
	}
	resp, err := p.Observe(ctx, typ, id, "mgmt.firmware")
	if err != nil {
		return r, err
	}
	if r.ObserveRC = resp.RC; resp.RC != RCOK {
		r.Message = fmt.Sprintf("device refused to observe mgmt.firmware: rc %d %s", resp.RC, resp.Message)
		return r, nil
	}
	drain(watch) // notifies before the initiate are not part of the action
	err = p.runFirmware(ctx, key, action, watch, &r)
	if err != nil {
		return r, err
	}
	resp, err = p.Cancel(ctx, typ, id, "mgmt.firmware")
	if err != nil {
		return r, err
	}
	if r.CancelRC = resp.RC; resp.RC != RCOK {
		r.Succeeded = false
		r.Message += fmt.Sprintf("; device refused to cancel the observation: rc %d %s", resp.RC, resp.Message)
	}
	p.log.Info("firmware action done", "type", typ, "id", id, "action", action, "succeeded", r.Succeeded, "detail", r.Message)
	return r, nil
}

// runFirmware sends the initiate request and follows the notifies to the
// end of the action.
func (p *Platform) runFirmware(ctx context.Context, key deviceKey, action string, watch <-chan firmwareNotice, r *FirmwareResult) error {
	rest := builtinActions[action].rest
	resp, err := p.dmCall(ctx, key, rest, func(reqID string) []byte { return actionPayload(reqID, nil) }, nil)
	if err != nil {
		return err
	}
	if r.InitiateRC, r.InitiateMessage = resp.RC, resp.Message; resp.RC != RCAccepted {
		r.Message = fmt.Sprintf("device did not start %s: rc %d %s", action, resp.RC, resp.Message)
		return nil
	}
	for {
		select {
		case n := <-watch:
			r.Transitions = append(r.Transitions, n.status)
			if done, ok, msg := firmwareOutcome(action, r.Transitions, n); done {
				r.Succeeded, r.Message = ok, msg
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return ErrClosed
		}
	}
}

// firmwareOutcome decides from the transitions so far, the last of them
// from notify last, whether the action has ended and how. The end of a
// download is a notify of state 2, or of state 0 with a failure
// updateStatus or after state 1; the end of an update a notify of
// updateStatus 0 or a failure. A member the notify did not carry decides
// nothing: a stale resting value is no answer.
func firmwareOutcome(action string, ts []FirmwareStatus, last firmwareNotice) (done, ok bool, msg string) {
	st := last.status
	if action == "firmware/download" {
		if !last.hasState {
			return false, false, ""
		}
		downloading := false
		for _, t := range ts {
			downloading = downloading || t.State == FirmwareDownloading
		}
		switch {
		case st.State == FirmwareDownloaded:
			return true, true, "downloaded"
		case st.State == FirmwareIdle && st.UpdateStatus >= FirmwareOutOfMemory:
			return true, false, "download failed: updateStatus " + updateStatusName(st.UpdateStatus)
		case st.State == FirmwareIdle && downloading:
			return true, false, "download stopped without an updateStatus"
		}
		return false, false, ""
	}
	switch {
	case !last.hasUpdateStatus:
		return false, false, ""
	case st.UpdateStatus == FirmwareSuccess:
		return true, true, "updated"
	case st.UpdateStatus >= FirmwareOutOfMemory:
		return true, false, "update failed: updateStatus " + updateStatusName(st.UpdateStatus)
	}
	return false, false, ""
}

func updateStatusName(s int) string {
	names := []string{"0 success", "1 in progress", "2 out of memory", "3 connection lost",
		"4 verification failed", "5 unsupported image", "6 invalid URI"}
	if s >= 0 && s < len(names) {
		return names[s]
	}
	return fmt.Sprint(s)
}

// field is the mgmt.firmware value a firmware action stages (protocol.md
// §7.6.3's example: the spec plus state and updateStatus 0 and an empty
// updatedDateTime).
func (s FirmwareSpec) field() Field {
	v, _ := json.Marshal(map[string]any{
		"version": s.Version, "name": s.Name, "uri": s.URI, "verifier": s.Verifier,
		"state": 0, "updateStatus": 0, "updatedDateTime": "",
	}) // cannot fail
	return Field{Field: "mgmt.firmware", Value: v}
}

// watchFirmware registers the one firmware action of key; ok is false if
// one runs already.
func (s *dmServer) watchFirmware(key deviceKey) (<-chan firmwareNotice, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fwWatch[key] != nil {
		return nil, false
	}
	ch := make(chan firmwareNotice, 64)
	s.fwWatch[key] = ch
	return ch, true
}

func (s *dmServer) unwatchFirmware(key deviceKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.fwWatch, key)
}

func drain(ch <-chan firmwareNotice) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
