package dm

import (
	"reflect"
	"testing"
)

// FuzzDecodeRequest: the decoder of platform requests never panics, and
// whatever it accepts re-encodes to a request that decodes the same.
func FuzzDecodeRequest(f *testing.F) {
	seeds := []struct{ rest, payload string }{
		{restObserve, `{"reqId":"909b","d":{"fields":[{"field":"mgmt.firmware"}]}}`},
		{restCancel, `{"reqId":"d9ca","d":{"fields":[{"field":"mgmt.firmware"}]}}`},
		{restUpdate, `{"d":{"fields":[{"field":"metadata","value":{"pollIntervalSec":30}}]}}`},
		{restUpdate, `{"reqId":"f38f","d":{"fields":[{"field":"mgmt.firmware","value":{"version":"3.3.0","uri":"https://fw.example.com/a.bin","verifier":"9f2c","state":0}}]}}`},
		{restReboot, `{"reqId":"r1"}`},
		{restFactoryReset, `{"reqId":"r2","d":null}`},
		{restFwDownload, `{"reqId":"7b24"}`},
		{restFwUpdate, `{"reqId":"7b25","d":{}}`},
		{"mgmt/custom/acme-modbus-v1/rescanBus", `{"reqId":"d38f","d":{"fields":[{"field":"port","value":"rs485-1"},{"field":"unitRange","value":"1-32"}]}}`},
		{"mgmt/custom/acme/x", `{"reqId":"c"}`},
		{"mgmt/custom/acme/y", `{"reqId":"<&>","d":{"fields":[{"field":"a<b","value":"<&>"}]}}`},
		{restObserve, `{"reqId":"x","d":{"fields":[{"value":1}]}}`},
		{restReboot, `{"reqId":7}`},
		{restReboot, `[`},
		{"mgmt/custom//x", `{}`},
		{"mgmt/initiate/device/explode", `{"reqId":"z"}`},
	}
	for _, s := range seeds {
		f.Add(s.rest, []byte(s.payload))
	}
	f.Fuzz(func(t *testing.T, rest string, payload []byte) {
		req, rc, msg := decodeRequest(rest, payload)
		if rc != 0 {
			if msg == "" {
				t.Errorf("rc %d without a message", rc)
			}
			return
		}
		again, rc, msg := decodeRequest(rest, encodeRequest(req))
		if rc != 0 {
			t.Fatalf("re-encoded request refused: rc %d %s (%s)", rc, msg, encodeRequest(req))
		}
		if !reflect.DeepEqual(req, again) {
			t.Errorf("decode(encode(%+v)) = %+v", req, again)
		}
	})
}

func TestParamValue(t *testing.T) {
	tests := map[string]string{
		`"120"`: `120`, `"-2.5"`: `-2.5`, `"1e3"`: `1e3`, `"true"`: `true`, `"false"`: `false`,
		`"rs485-1"`: `"rs485-1"`, `"1-32"`: `"1-32"`, `" 120"`: `" 120"`, `"01"`: `"01"`, `"NaN"`: `"NaN"`,
		`""`: `""`, `7`: `7`, `{"a":1}`: `{"a":1}`, `"\"12\""`: `"\"12\""`,
	}
	for in, want := range tests {
		if got := string(paramValue([]byte(in))); got != want {
			t.Errorf("paramValue(%s) = %s, want %s", in, got, want)
		}
	}
}
