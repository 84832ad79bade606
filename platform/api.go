package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// APIPath is where APIHandler takes device-management requests: the path
// of the platform's REST API for them (protocol.md §7.1).
const APIPath = "/api/v0002/mgmt/requests"

// Limits of the API.
const (
	maxAPIBody        = 64 << 10
	defaultAPITimeout = 60 * time.Second
	maxAPITimeout     = 3600 // seconds
)

// APIRequest is the body of POST /api/v0002/mgmt/requests: the platform's
// own format (protocol.md §7.1) for one device, plus this package's local
// actions.
//
// Action is device/reboot, device/factoryReset, firmware/download,
// firmware/update (parameters uri, verifier, name, version; the whole
// sequence of rule D5 runs) or <bundleId>/<actionId> (parameters checked
// against the bundle), as on the platform, or one of the local actions
// observe and cancel (parameter names are the attributes, values ignored)
// and update (device/update with a reqId; each value is the attribute's
// JSON value). Timeout, in seconds (1 to 3600, default 60), bounds the
// wait for the device.
type APIRequest struct {
	Action     string         `json:"action"`
	Parameters []APIParameter `json:"parameters,omitempty"`
	Devices    []APIDevice    `json:"devices"`
	Timeout    int            `json:"timeout,omitempty"`
}

// APIParameter is one name/value parameter of an APIRequest.
type APIParameter struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// APIDevice names the device of an APIRequest.
type APIDevice struct {
	TypeID   string `json:"typeId"`
	DeviceID string `json:"deviceId"`
}

// APIResult is the answer to an APIRequest once the action has ended (the
// platform's REST API answers at once and reports later; the local one
// waits, which is what a test or a shell wants). RC and Message are the
// device's answer to the request, for a firmware action to the initiate
// request; Fields its d.fields; Firmware the whole firmware sequence.
type APIResult struct {
	Action   string          `json:"action"`
	TypeID   string          `json:"typeId"`
	DeviceID string          `json:"deviceId"`
	RC       int             `json:"rc"`
	Message  string          `json:"message,omitempty"`
	Fields   []Field         `json:"fields,omitempty"`
	Firmware *FirmwareResult `json:"firmware,omitempty"`
}

// APIError is the body of an API answer other than 200.
type APIError struct {
	Message string `json:"message"`
}

// decodeAPIRequest decodes and checks an API request body: known members
// only, one device with a valid type and ID, parameter names unique, a
// timeout in range.
func decodeAPIRequest(b []byte) (APIRequest, error) {
	var req APIRequest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("body is not an API request: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, errors.New("data after the request")
	}
	if len(req.Devices) != 1 {
		return req, fmt.Errorf("the local platform takes exactly one device per request, got %d", len(req.Devices))
	}
	d := req.Devices[0]
	if checkIdent(d.TypeID) != nil || checkIdent(d.DeviceID) != nil {
		return req, fmt.Errorf("device %q/%q is not a valid type and id", short(d.TypeID), short(d.DeviceID))
	}
	if req.Action == "" {
		return req, errors.New("action is missing")
	}
	if req.Timeout < 0 || req.Timeout > maxAPITimeout {
		return req, fmt.Errorf("timeout %d: want 1 to %d seconds", req.Timeout, maxAPITimeout)
	}
	seen := map[string]bool{}
	for _, prm := range req.Parameters {
		if prm.Name == "" || seen[prm.Name] {
			return req, fmt.Errorf("parameter name %q empty or given twice", short(prm.Name))
		}
		seen[prm.Name] = true
	}
	return req, nil
}

// APIHandler serves POST APIPath for applications: HTTP basic auth with a
// registered API key and token (as rule C5 for MQTT), a JSON APIRequest,
// and a JSON APIResult when the action has ended. Errors are JSON
// APIErrors: 400 for a bad request, 401 for bad credentials, 404 for an
// unknown device, 409 for a device that is not managed, did not advertise
// the capability or runs a firmware action already, 504 when the device
// did not answer in time, 503 after Close.
func (p *Platform) APIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+APIPath, p.serveAPI)
	return mux
}

func (p *Platform) serveAPI(w http.ResponseWriter, r *http.Request) {
	key, token, ok := r.BasicAuth()
	if !ok || !p.reg.checkAPIKey(key, token) {
		w.Header().Set("WWW-Authenticate", `Basic realm="local platform"`)
		writeJSON(w, http.StatusUnauthorized, APIError{"unknown api key or wrong api token"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
	if err != nil || len(body) > maxAPIBody {
		writeJSON(w, http.StatusBadRequest, APIError{fmt.Sprintf("body unreadable or larger than %d bytes", maxAPIBody)})
		return
	}
	req, err := decodeAPIRequest(body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, APIError{err.Error()})
		return
	}
	timeout := defaultAPITimeout
	if req.Timeout > 0 {
		timeout = time.Duration(req.Timeout) * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res, err := p.runAPIRequest(ctx, req)
	p.log.Info("api request", "api_key", key, "action", req.Action, "type", res.TypeID, "id", res.DeviceID, "rc", res.RC, "err", err)
	if err != nil {
		writeJSON(w, apiStatus(err), APIError{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// runAPIRequest carries out a decoded request.
func (p *Platform) runAPIRequest(ctx context.Context, req APIRequest) (APIResult, error) {
	d := req.Devices[0]
	res := APIResult{Action: req.Action, TypeID: d.TypeID, DeviceID: d.DeviceID}
	params := map[string]string{}
	var attrs []string
	var fields []Field
	for _, prm := range req.Parameters {
		params[prm.Name] = prm.Value
		attrs = append(attrs, prm.Name)
		fields = append(fields, Field{Field: prm.Name, Value: json.RawMessage(prm.Value)})
	}
	var resp Response
	var err error
	switch req.Action {
	case "observe":
		resp, err = p.Observe(ctx, d.TypeID, d.DeviceID, attrs...)
	case "cancel":
		resp, err = p.Cancel(ctx, d.TypeID, d.DeviceID, attrs...)
	case "update":
		resp, err = p.UpdateAttributes(ctx, d.TypeID, d.DeviceID, fields)
	case "firmware/download", "firmware/update":
		spec := FirmwareSpec{URI: params["uri"], Verifier: params["verifier"], Name: params["name"], Version: params["version"]}
		for n := range params {
			if n != "uri" && n != "verifier" && n != "name" && n != "version" {
				return res, fmt.Errorf("%w: %s takes uri, verifier, name and version, not %q", ErrInvalidAction, req.Action, short(n))
			}
		}
		var fr FirmwareResult
		if req.Action == "firmware/download" {
			fr, err = p.FirmwareDownload(ctx, d.TypeID, d.DeviceID, spec)
		} else {
			fr, err = p.FirmwareUpdate(ctx, d.TypeID, d.DeviceID, spec)
		}
		res.Firmware = &fr
		resp = Response{RC: fr.InitiateRC, Message: fr.Message}
	default:
		resp.RC, err = p.DeviceAction(ctx, d.TypeID, d.DeviceID, req.Action, params)
	}
	res.RC, res.Message, res.Fields = resp.RC, resp.Message, resp.Fields
	return res, err
}

// apiStatus maps an action's error to an HTTP status.
func apiStatus(err error) int {
	switch {
	case errors.Is(err, ErrInvalidAction), errors.Is(err, ErrInvalidTopic), errors.Is(err, ErrQuickstart):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownDevice):
		return http.StatusNotFound
	case errors.Is(err, ErrNotManaged), errors.Is(err, ErrUnsupportedAction), errors.Is(err, ErrBusy):
		return http.StatusConflict
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway // e.g. a device response that did not decode
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone
}
