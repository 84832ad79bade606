package uplink

import (
	"errors"
	"strings"
	"testing"
)

func TestIdentityBuilders(t *testing.T) {
	meter := Identity{Org: "ab12cd", Type: "power-meter", ID: "meter-7"}
	gw := Identity{Org: "ab12cd", Type: "edge-gw", ID: "gw-01"}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"device client id", DeviceClientID(meter), "d:ab12cd:power-meter:meter-7"},
		{"quickstart client id", DeviceClientID(Identity{Org: QuickstartOrg, Type: "pump", ID: "p1"}), "d:quickstart:pump:p1"},
		{"gateway client id", GatewayClientID(gw), "g:ab12cd:edge-gw:gw-01"},
		{"device event", DeviceEventTopic("reading", "json"), "iot-2/evt/reading/fmt/json"},
		{"gateway event for child", GatewayEventTopic(meter, "reading", "json"), "iot-2/type/power-meter/id/meter-7/evt/reading/fmt/json"},
		{"gateway event for itself", GatewayEventTopic(gw, "health", "json"), "iot-2/type/edge-gw/id/gw-01/evt/health/fmt/json"},
		{"device command filter", DeviceCommandTopic("+", "+"), "iot-2/cmd/+/fmt/+"},
		{"device command", DeviceCommandTopic("setSpeed", "json"), "iot-2/cmd/setSpeed/fmt/json"},
		{"gateway command filter", GatewayCommandTopic(Identity{Type: "power-meter", ID: "+"}, "+", "+"), "iot-2/type/power-meter/id/+/cmd/+/fmt/+"},
		{"gateway notify", GatewayNotifyTopic(gw), "iot-2/type/edge-gw/id/gw-01/notify"},
		{"host", Host("ab12cd", "internetofthings.ibmcloud.com"), "ab12cd.messaging.internetofthings.ibmcloud.com"},
		{"host default domain", Host("ab12cd", ""), "ab12cd.messaging.internetofthings.ibmcloud.com"},
		{"host quickstart", Host(QuickstartOrg, ""), "quickstart.messaging.internetofthings.ibmcloud.com"},
		{"host local", Host("ab12cd", "localhost"), "ab12cd.messaging.localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestValidateID(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"meter-7", true},
		{"power_meter.v2", true},
		{"A", true},
		{strings.Repeat("x", 36), true},
		{strings.Repeat("x", 37), false},
		{"", false},
		{"meter 7", false},
		{"meter/7", false},
		{"d:x", false},
		{"+", false},
		{"zähler", false},
	}
	for _, tt := range tests {
		err := ValidateID(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, want it to wrap ErrInvalidID", tt.in, err)
		}
	}
}

func TestValidateIDMessage(t *testing.T) {
	err := ValidateID("meter 7")
	if err == nil || !strings.Contains(err.Error(), `' ' at offset 5`) {
		t.Errorf("ValidateID(%q) = %v, want the offending character and offset", "meter 7", err)
	}
}

func TestValidateOrg(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"ab12cd", true},
		{"quickstart", true},
		{"local-test", true},
		{"", false},
		{"-ab", false},
		{"ab-", false},
		{"ab.cd", false},
		{"ab:cd", false},
		{strings.Repeat("a", 64), false},
	}
	for _, tt := range tests {
		if err := ValidateOrg(tt.in); (err == nil) != tt.ok {
			t.Errorf("ValidateOrg(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestValidateEventID(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"reading", true},
		{"status", true},
		{"json", true},
		{"Zähler Stand", true}, // any MQTT string within one level
		{"", false},
		{"a/b", false},
		{"+", false},
		{"a#", false},
		{"a\x00b", false},
		{"tab\there", false},
		{"\xff", false},
	}
	for _, tt := range tests {
		if err := ValidateEventID(tt.in); (err == nil) != tt.ok {
			t.Errorf("ValidateEventID(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestIdentityValidate(t *testing.T) {
	if err := (Identity{Org: "ab12cd", Type: "edge-gw", ID: "gw-01"}).Validate(); err != nil {
		t.Errorf("Validate() = %v, want nil", err)
	}
	err := (Identity{Org: "ab12cd", Type: "edge gw", ID: "gw-01"}).Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "type: ") || !errors.Is(err, ErrInvalidID) {
		t.Errorf("Validate() with a bad type = %v, want a \"type: \" error wrapping ErrInvalidID", err)
	}
}

func TestValidateTopicName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"iot-2/evt/reading/fmt/json", true},
		{"", false},
		{"iot-2/evt/+/fmt/json", false},
		{"iot-2/#", false},
		{"a\x00b", false},
	}
	for _, tt := range tests {
		err := validateTopicName(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("validateTopicName(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("validateTopicName(%q) = %v, want ErrInvalidTopic", tt.in, err)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"iot-2/cmd/+/fmt/+", true},
		{"iotdm-1/#", true},
		{"#", true},
		{"iot-2/type/+/id/+/cmd/+/fmt/+", true},
		{"", false},
		{"iot-2/cmd+/fmt", false},
		{"iot-2/#/x", false},
		{"iot-2/a#", false},
	}
	for _, tt := range tests {
		if err := validateFilter(tt.in); (err == nil) != tt.ok {
			t.Errorf("validateFilter(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}
