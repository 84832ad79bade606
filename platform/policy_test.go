package platform

import "testing"

type fakeDevices map[deviceKey]Device

func (f fakeDevices) device(typ, id string) (Device, bool) {
	d, ok := f[deviceKey{typ, id}]
	return d, ok
}

var (
	devP17 = identity{class: ClassDevice, org: testOrg, typ: "pump", id: "P-17"}
	gw     = identity{class: ClassGateway, org: testOrg, typ: "edge-gw", id: "gw-01"}
	app    = identity{class: ClassApp, org: testOrg, app: "dash"}
	qsDev  = identity{class: ClassDevice, org: QuickstartOrg, typ: "s", id: "1"}
	qsApp  = identity{class: ClassApp, org: QuickstartOrg, app: "v"}
)

func testPolicy(quickstart bool) policy {
	return policy{quickstart: quickstart, devices: fakeDevices{
		{"pump", "P-17"}:     {Type: "pump", ID: "P-17"},
		{"edge-gw", "gw-01"}: {Type: "edge-gw", ID: "gw-01", Gateway: true, Role: RoleStandard},
		{"edge-gw", "gw-02"}: {Type: "edge-gw", ID: "gw-02", Gateway: true},
		{"edge-gw", "gw-03"}: {Type: "edge-gw", ID: "gw-03", Gateway: true, Role: RolePrivileged},
	}}
}

// gw3 is a privileged gateway of testPolicy; gw (gw-01) is a standard one.
var gw3 = identity{class: ClassGateway, org: testOrg, typ: "edge-gw", id: "gw-03"}

func TestPolicyGatewayAutoRegistration(t *testing.T) {
	tests := []struct {
		who          identity
		publish      bool
		topic        string
		want         verdict
		wantRegister bool
		rule         string
	}{
		{gw3, true, "iot-2/type/pump/id/P-99/evt/e/fmt/json", allow, true, ""},
		{gw3, true, "iotdevice-1/type/pump/id/P-99/mgmt/manage", allow, true, ""},
		{gw3, true, "iot-2/type/pump/id/P-17/evt/e/fmt/json", allow, false, ""},
		{gw3, true, "iot-2/type/edge-gw/id/gw-02/evt/e/fmt/json", drop, false, "P4"},
		{gw3, true, "iot-2/type/pump/id/P-99/cmd/c/fmt/json", drop, false, "P4"},
		{gw, true, "iot-2/type/pump/id/P-99/evt/e/fmt/json", drop, false, "P4"},
		{gw3, false, "iot-2/type/pump/id/P-99/cmd/+/fmt/+", allow, true, ""},
		{gw3, false, "iot-2/type/pump/id/P-99/mon", allow, true, ""},
		{gw3, false, "iotdm-1/type/pump/id/P-99/#", allow, true, ""},
		{gw3, false, "iot-2/type/pump/id/+/cmd/+/fmt/+", allow, false, ""},
		{gw3, false, "iot-2/type/edge-gw/id/gw-02/cmd/+/fmt/+", forbid, false, "S2"},
		{gw, false, "iot-2/type/pump/id/P-99/cmd/+/fmt/+", forbid, false, "S2"},
	}
	for _, tt := range tests {
		var got decision
		if tt.publish {
			_, got = testPolicy(false).publish(tt.who, tt.topic, 1, 1)
		} else {
			_, got = testPolicy(false).subscribe(tt.who, tt.topic)
		}
		if got.verdict != tt.want || got.register != tt.wantRegister || got.rule != tt.rule {
			t.Errorf("%s/%s %q (publish %v): verdict %d register %v rule %q (%s), want %d %v %q",
				tt.who.typ, tt.who.id, tt.topic, tt.publish, got.verdict, got.register, got.rule, got.detail,
				tt.want, tt.wantRegister, tt.rule)
		}
	}
}

func TestPolicyPublish(t *testing.T) {
	tests := []struct {
		who        identity
		quickstart bool
		topic      string
		size       int
		qos        byte
		want       verdict
		rule       string
	}{
		{devP17, false, "iot-2/evt/e/fmt/json", MaxPayload, 2, allow, ""},
		{devP17, false, "iotdevice-1/mgmt/manage", 10, 1, allow, ""},
		{devP17, false, "iotdevice-1/response", 10, 1, allow, ""},
		{devP17, false, "iot-2/evt/e/fmt/json", MaxPayload + 1, 0, disconnect, "P2"},
		{devP17, false, "iot-2/type/pump/id/P-17/evt/e/fmt/json", 1, 0, disconnect, "P3"},
		{devP17, false, "iot-2/cmd/c/fmt/json", 1, 0, disconnect, "P3"},
		{devP17, false, "iotdm-1/response", 1, 0, disconnect, "P3"},
		{devP17, false, "iotdevice-1/type/pump/id/P-17/mgmt/manage", 1, 0, disconnect, "P3"},
		{devP17, false, "iot-2/evt//fmt/json", 1, 0, disconnect, "P6"},
		{devP17, false, "iot-2/evt/#", 1, 0, disconnect, "P6"},
		{gw, false, "iot-2/type/edge-gw/id/gw-01/evt/health/fmt/json", 1, 0, allow, ""},
		{gw, false, "iot-2/type/pump/id/P-17/evt/e/fmt/json", 1, 0, allow, ""},
		{gw, false, "iotdevice-1/type/pump/id/P-17/mgmt/manage", 1, 1, allow, ""},
		{gw, false, "iot-2/type/pump/id/P-99/evt/e/fmt/json", 1, 0, drop, "P4"},
		{gw, false, "iot-2/type/edge-gw/id/gw-02/evt/e/fmt/json", 1, 0, drop, "P4"},
		{gw, false, "iot-2/type/modbus meter/id/m/evt/e/fmt/json", 1, 0, drop, "P4"},
		{gw, false, "iot-2/evt/e/fmt/json", 1, 0, drop, "P4"},
		{gw, false, "iot-2/type/pump/id/P-17/cmd/c/fmt/json", 1, 0, drop, "P4"},
		{gw, false, "iot-2/type/pump/id/P-17/evt/e/fmt/json/", 1, 0, disconnect, "P6"},
		{app, false, "iot-2/type/pump/id/P-17/cmd/c/fmt/json", 1, 1, allow, ""},
		{app, false, "iot-2/type/pump/id/P-99/evt/e/fmt/json", 1, 1, allow, ""},
		{app, false, "iotdm-1/type/pump/id/P-17/response", 1, 1, disconnect, "P5"},
		{app, false, "iot-2/type/pump/id/P-17/mon", 1, 0, disconnect, "P5"},
		{app, false, "iot-2/evt/e/fmt/json", 1, 0, disconnect, "P5"},
		{qsDev, true, "iot-2/evt/e/fmt/json", 1, 0, allow, ""},
		{qsDev, true, "iot-2/evt/e/fmt/json", 1, 1, disconnect, "C6"},
		{qsDev, true, "iotdevice-1/mgmt/manage", 1, 0, disconnect, "C6"},
		{qsApp, true, "iot-2/type/s/id/1/cmd/c/fmt/json", 1, 0, disconnect, "C6"},
		{qsApp, true, "iot-2/type/s/id/1/evt/e/fmt/json", 1, 0, allow, ""},
	}
	for _, tt := range tests {
		_, got := testPolicy(tt.quickstart).publish(tt.who, tt.topic, tt.size, tt.qos)
		if got.verdict != tt.want || got.rule != tt.rule {
			t.Errorf("%s publish %q (%d bytes, qos %d): verdict %d rule %q (%s), want %d %q",
				tt.who.class, tt.topic, tt.size, tt.qos, got.verdict, got.rule, got.detail, tt.want, tt.rule)
		}
	}
}

func TestPolicySubscribe(t *testing.T) {
	tests := []struct {
		who        identity
		quickstart bool
		filter     string
		want       verdict
		rule       string
	}{
		{devP17, false, "iot-2/cmd/+/fmt/+", allow, ""},
		{devP17, false, "iot-2/cmd/c/fmt/json", allow, ""},
		{devP17, false, "iotdm-1/#", allow, ""},
		{devP17, false, "iotdm-1/observe", allow, ""},
		{devP17, false, "iotdm-1/mgmt/initiate/device/factory_reset", allow, ""},
		{devP17, false, "iotdm-1/mgmt/custom/#", allow, ""},
		{devP17, false, "iot-2/evt/+/fmt/+", forbid, "S1"},
		{devP17, false, "iot-2/type/+/id/+/evt/+/fmt/+", forbid, "S1"},
		{devP17, false, "iot-2/type/pump/id/P-17/cmd/+/fmt/+", forbid, "S1"},
		{devP17, false, "iotdevice-1/#", forbid, "S1"},
		{devP17, false, "iotdm-1/+/#", forbid, "S1"},
		{devP17, false, "#", forbid, "S1"},
		{devP17, false, "iot-2/cmd/#/fmt/+", disconnect, "P6"},
		{gw, false, "iot-2/type/+/id/+/cmd/+/fmt/+", allow, ""},
		{gw, false, "iot-2/type/pump/id/P-17/cmd/+/fmt/+", allow, ""},
		{gw, false, "iot-2/type/edge-gw/id/gw-01/notify", allow, ""},
		{gw, false, "iot-2/type/+/id/+/mon", allow, ""},
		{gw, false, "iotdm-1/type/+/id/+/#", allow, ""},
		{gw, false, "iotdm-1/#", allow, ""},
		{gw, false, "iot-2/type/pump/id/P-99/cmd/+/fmt/+", forbid, "S2"},
		{gw, false, "iot-2/type/edge-gw/id/gw-02/notify", forbid, "S2"},
		{gw, false, "iot-2/type/+/id/+/evt/+/fmt/+", forbid, "S2"},
		{gw, false, "iot-2/cmd/+/fmt/+", forbid, "S2"},
		{app, false, "iot-2/type/+/id/+/evt/+/fmt/+", allow, ""},
		{app, false, "iot-2/type/+/id/+/cmd/+/fmt/+", allow, ""},
		{app, false, "iot-2/type/+/id/+/mon", allow, ""},
		{app, false, "iot-2/app/+/mon", allow, ""},
		{app, false, "iotdm-1/type/+/id/+/#", forbid, "S5"},
		{app, false, "#", forbid, "S5"},
		{qsDev, true, "iot-2/cmd/+/fmt/+", forbid, "C6"},
		{qsApp, true, "iot-2/type/s/id/1/evt/+/fmt/+", allow, ""},
		{qsApp, true, "iot-2/type/s/id/+/evt/+/fmt/+", forbid, "C6"},
		{qsApp, true, "iot-2/type/s/id/1/cmd/+/fmt/+", forbid, "C6"},
	}
	for _, tt := range tests {
		_, got := testPolicy(tt.quickstart).subscribe(tt.who, tt.filter)
		if got.verdict != tt.want || got.rule != tt.rule {
			t.Errorf("%s subscribe %q: verdict %d rule %q (%s), want %d %q",
				tt.who.class, tt.filter, got.verdict, got.rule, got.detail, tt.want, tt.rule)
		}
	}
}
