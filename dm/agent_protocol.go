package dm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Response codes of the Device Management Protocol (protocol.md §7.8).
const (
	RCOK           = 200
	RCAccepted     = 202
	RCChanged      = 204
	RCBadRequest   = 400
	RCNotFound     = 404
	RCConflict     = 409
	RCInternal     = 500
	RCNotSupported = 501
)

// MaxRequestBytes is the largest iotdm-1 request the agent decodes; a
// larger one is answered with rc 400. Platform requests are a few hundred
// bytes; custom actions with many parameters stay well below this.
const MaxRequestBytes = 64 << 10

// The request topics (the part after iotdm-1/ or iotdm-1/type/<t>/id/<d>/)
// the agent answers, besides mgmt/custom/<bundle>/<action>.
const (
	restResponse     = "response"
	restObserve      = "observe"
	restCancel       = "cancel"
	restUpdate       = "device/update"
	restReboot       = "mgmt/initiate/device/reboot"
	restFactoryReset = "mgmt/initiate/device/factory_reset"
	restFwDownload   = "mgmt/initiate/firmware/download"
	restFwUpdate     = "mgmt/initiate/firmware/update"
	restCustomPrefix = "mgmt/custom/"
)

// request is a decoded platform request: {"reqId": "...", "d": {...}}.
type request struct {
	rest   string
	reqID  string
	fields []field // d.fields, for observe, cancel, device/update and custom actions
}

// field is one entry of d.fields. Value is the raw JSON value, nil when
// the entry has none (observe and cancel name fields only).
type field struct {
	Field string          `json:"field"`
	Value json.RawMessage `json:"value,omitempty"`
}

// needsReqID reports whether a request on rest must carry a reqId: every
// request but device/update, which the platform sends without one when it
// expects no answer (protocol.md §7.6.3).
func needsReqID(rest string) bool { return rest != restUpdate }

// decodeRequest decodes and checks a platform request. On failure it
// returns rc 400 (or 501 for a topic the agent does not know) and a
// message; the request's reqId is kept whenever it could be read, so the
// error can be correlated.
func decodeRequest(rest string, payload []byte) (request, int, string) {
	req := request{rest: rest}
	if !knownRest(rest) {
		req.reqID = peekReqID(payload)
		return req, RCNotSupported, fmt.Sprintf("request %q is not supported", short(rest))
	}
	if len(payload) > MaxRequestBytes {
		return req, RCBadRequest, fmt.Sprintf("request is %d bytes, more than %d", len(payload), MaxRequestBytes)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(payload, &top); err != nil || top == nil {
		return req, RCBadRequest, "request is not a JSON object"
	}
	if raw, ok := top["reqId"]; ok {
		if err := json.Unmarshal(raw, &req.reqID); err != nil {
			return req, RCBadRequest, "reqId is not a string"
		}
	}
	for k := range top {
		if k != "reqId" && k != "d" {
			return req, RCBadRequest, fmt.Sprintf("unknown member %q", short(k))
		}
	}
	if req.reqID == "" && needsReqID(rest) {
		return req, RCBadRequest, "reqId is missing"
	}
	raw, ok := top["d"]
	if !ok || isNull(raw) {
		if _, _, custom := customAction(rest); takesFields(rest) && !custom { // a custom action may have no parameters
			return req, RCBadRequest, "d.fields is missing"
		}
		return req, 0, ""
	}
	var d map[string]json.RawMessage
	if err := json.Unmarshal(raw, &d); err != nil || d == nil {
		return req, RCBadRequest, "d is not a JSON object"
	}
	for k := range d {
		if k != "fields" {
			return req, RCBadRequest, fmt.Sprintf("unknown member d.%s", short(k))
		}
	}
	if !takesFields(rest) {
		if len(d) > 0 {
			return req, RCBadRequest, "this request takes no d.fields"
		}
		return req, 0, ""
	}
	if rc, msg := decodeFields(d["fields"], &req); rc != 0 {
		return req, rc, msg
	}
	return req, 0, ""
}

func decodeFields(raw json.RawMessage, req *request) (int, string) {
	var list []map[string]json.RawMessage
	if raw == nil || json.Unmarshal(raw, &list) != nil || list == nil {
		return RCBadRequest, "d.fields must be a list of {field, value}"
	}
	for _, entry := range list {
		var f field
		for k, v := range entry {
			switch k {
			case "field":
				if json.Unmarshal(v, &f.Field) != nil || f.Field == "" {
					return RCBadRequest, "every d.fields entry needs a field name (a string)"
				}
			case "value":
				if !isNull(v) {
					var buf bytes.Buffer
					_ = json.Compact(&buf, v) // valid: it decoded
					f.Value = buf.Bytes()
				}
			default:
				return RCBadRequest, fmt.Sprintf("unknown member %q in d.fields", short(k))
			}
		}
		if f.Field == "" {
			return RCBadRequest, "every d.fields entry needs a field name (a string)"
		}
		req.fields = append(req.fields, f)
	}
	return 0, ""
}

// encodeRequest is the inverse of decodeRequest (tests and the fuzz target
// use it to check that decoding loses nothing).
func encodeRequest(req request) []byte {
	type d struct {
		Fields []field `json:"fields"`
	}
	out := struct {
		ReqID string `json:"reqId,omitempty"`
		D     *d     `json:"d,omitempty"`
	}{ReqID: req.reqID}
	if takesFields(req.rest) {
		out.D = &d{Fields: req.fields}
		if out.D.Fields == nil {
			out.D.Fields = []field{}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // values go back byte for byte
	_ = enc.Encode(out)      // cannot fail: strings and compact raw JSON
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func knownRest(rest string) bool {
	switch rest {
	case restObserve, restCancel, restUpdate, restReboot, restFactoryReset, restFwDownload, restFwUpdate:
		return true
	}
	bundle, action, ok := customAction(rest)
	return ok && bundle != "" && action != ""
}

// customAction splits mgmt/custom/<bundle>/<action>.
func customAction(rest string) (bundle, action string, ok bool) {
	tail, ok := strings.CutPrefix(rest, restCustomPrefix)
	if !ok {
		return "", "", false
	}
	bundle, action, ok = strings.Cut(tail, "/")
	if !ok || strings.Contains(action, "/") {
		return "", "", false
	}
	return bundle, action, true
}

func takesFields(rest string) bool {
	if _, _, ok := customAction(rest); ok {
		return true
	}
	return rest == restObserve || rest == restCancel || rest == restUpdate
}

// peekReqID reads the reqId of a payload that is otherwise not decoded.
func peekReqID(payload []byte) string {
	if len(payload) > MaxRequestBytes {
		return ""
	}
	var r struct {
		ReqID string `json:"reqId"`
	}
	_ = json.Unmarshal(payload, &r)
	return r.ReqID
}

// response is a DM response: the agent's answer on iotdevice-1/response
// and the platform's on iotdm-1/response.
type response struct {
	RC      int             `json:"rc"`
	Message string          `json:"message,omitempty"`
	D       json.RawMessage `json:"d,omitempty"`
	ReqID   string          `json:"reqId,omitempty"`

	// then, if set, runs in the background once the response is sent (a
	// download, or Manage after a reboot, must follow the rc 202).
	then func(context.Context)
}

// decodeResponse decodes the platform's answer to one of the agent's
// requests. A response without a reqId or an integer rc is an error.
func decodeResponse(payload []byte) (response, error) {
	var r struct {
		RC      *float64 `json:"rc"`
		Message string   `json:"message"`
		ReqID   string   `json:"reqId"`
	}
	if len(payload) > MaxRequestBytes {
		return response{}, fmt.Errorf("response is %d bytes", len(payload))
	}
	if err := json.Unmarshal(payload, &r); err != nil {
		return response{}, fmt.Errorf("response is not a JSON object: %v", err)
	}
	if r.RC == nil || *r.RC != math.Trunc(*r.RC) || *r.RC < 0 || *r.RC > 999 {
		return response{ReqID: r.ReqID}, fmt.Errorf("response rc is missing or not a code")
	}
	return response{RC: int(*r.RC), Message: r.Message, ReqID: r.ReqID}, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// short cuts a string from a request for use in a message.
func short(s string) string {
	const limit = 64
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}

// newReqID returns a random (version 4) UUID, as the SDKs use for reqId.
func newReqID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
