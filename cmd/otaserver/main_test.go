package main

import (
	"flag"
	"testing"
	"time"
)

func TestEnvDefaults(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.tlsCert, "tls-cert-file", "", "")
	fs.DurationVar(&o.reportInterval, "report-interval", 2*time.Second, "")
	if err := fs.Parse([]string{"--tls-cert-file=/cli.crt"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"OTASERVER_TLS_CERT_FILE": "/env.crt", "OTASERVER_REPORT_INTERVAL": "5s"}
	if err := envDefaults(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if o.tlsCert != "/cli.crt" || o.reportInterval != 5*time.Second {
		t.Fatalf("cli must win, env fills the rest: %+v", o)
	}
	env["OTASERVER_REPORT_INTERVAL"] = "soon"
	fs2 := flag.NewFlagSet("t", flag.ContinueOnError)
	fs2.DurationVar(&o.reportInterval, "report-interval", 0, "")
	if err := envDefaults(fs2, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil {
		t.Fatal("bad env value accepted")
	}
}

func TestValidate(t *testing.T) {
	base := options{namespace: "ns", reportInterval: 2 * time.Second, statusHeartbeat: 30 * time.Second, assignmentTTL: time.Hour, deviceRate: 1, deviceBurst: 1, dataDir: "/d"}
	tests := []struct {
		name string
		mod  func(*options)
		ok   bool
	}{
		{"insecure for local use", func(o *options) { o.insecureHTTP = true }, true},
		{"tls", func(o *options) { o.tlsCert, o.tlsKey = "c", "k" }, true},
		{"neither tls nor insecure", func(o *options) {}, false},
		{"both", func(o *options) { o.insecureHTTP, o.tlsCert, o.tlsKey = true, "c", "k" }, false},
		{"no namespace", func(o *options) { o.insecureHTTP, o.namespace = true, "" }, false},
	}
	for _, tc := range tests {
		o := base
		tc.mod(&o)
		if err := o.validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.ok && (o.blobDir != "/d/blobs" || o.storeDSN != "sqlite:///d/otaserver/devices.db") {
			t.Errorf("%s: defaults %q %q", tc.name, o.blobDir, o.storeDSN)
		}
	}
}
