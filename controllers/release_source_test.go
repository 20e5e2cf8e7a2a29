package controllers

import (
	"strings"
	"testing"

	otav1 "github.com/otaflow/otaflow/api/v1alpha1"
	"github.com/otaflow/otaflow/internal/fetch"
)

func TestSourceCredentials(t *testing.T) {
	kv := func(pairs ...string) map[string][]byte {
		m := map[string][]byte{}
		for i := 0; i < len(pairs); i += 2 {
			m[pairs[i]] = []byte(pairs[i+1])
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		scheme string
		data   map[string][]byte
		want   fetch.Credentials
		reason string // "" = ok
		msg    string
	}{
		{"basic", "https", kv("username", "robot", "password", "pw-1", "ca.crt", "other tools' key"), fetch.Credentials{Username: "robot", Password: "pw-1"}, "", ""},
		{"bearer", "http", kv("token", "tok-1"), fetch.Credentials{Token: "tok-1"}, "", ""},
		{"oci basic", "oci", kv("username", "robot", "password", "pw-1"), fetch.Credentials{Username: "robot", Password: "pw-1"}, "", ""},
		{"s3", "s3", kv("accessKeyID", "AKIA1", "secretAccessKey", "sk-1"), fetch.Credentials{AccessKeyID: "AKIA1", SecretAccessKey: "sk-1"}, "", ""},
		{"s3 session", "s3", kv("accessKeyID", "AKIA1", "secretAccessKey", "sk-1", "sessionToken", "st-1"), fetch.Credentials{AccessKeyID: "AKIA1", SecretAccessKey: "sk-1", SessionToken: "st-1"}, "", ""},

		{"no known key", "https", kv("user", "robot"), fetch.Credentials{}, otav1.ReasonSourceCredentialsUnavailable, `none of the keys "username" and "password", or "token"`},
		{"password missing", "https", kv("username", "robot"), fetch.Credentials{}, otav1.ReasonSourceCredentialsUnavailable, `no key "password"`},
		{"username missing", "oci", kv("password", "pw-1"), fetch.Credentials{}, otav1.ReasonSourceCredentialsUnavailable, `no key "username"`},
		{"secret key missing", "s3", kv("accessKeyID", "AKIA1"), fetch.Credentials{}, otav1.ReasonSourceCredentialsUnavailable, `no key "secretAccessKey"`},
		{"access key missing", "s3", kv("secretAccessKey", "sk-1", "sessionToken", "st-1"), fetch.Credentials{}, otav1.ReasonSourceCredentialsUnavailable, `no key "accessKeyID"`},

		{"basic and token", "https", kv("username", "robot", "password", "pw-1", "token", "tok-1"), fetch.Credentials{}, otav1.ReasonSourceCredentialsInvalid, "keep one kind"},
		{"s3 keys for https", "https", kv("accessKeyID", "AKIA1", "secretAccessKey", "sk-1"), fetch.Credentials{}, otav1.ReasonSourceCredentialsInvalid, "not S3 keys"},
		{"basic for s3", "s3", kv("username", "robot", "password", "pw-1"), fetch.Credentials{}, otav1.ReasonSourceCredentialsInvalid, `an s3:// source takes keys "accessKeyID"`},
		{"token and keys for s3", "s3", kv("token", "tok-1", "accessKeyID", "AKIA1", "secretAccessKey", "sk-1"), fetch.Credentials{}, otav1.ReasonSourceCredentialsInvalid, "not"},
		{"empty password", "https", kv("username", "robot", "password", ""), fetch.Credentials{}, otav1.ReasonSourceCredentialsInvalid, `key "password" is empty`},
		{"empty token", "oci", kv("token", ""), fetch.Credentials{}, otav1.ReasonSourceCredentialsInvalid, `key "token" is empty`},
		{"empty session token", "s3", kv("accessKeyID", "AKIA1", "secretAccessKey", "sk-1", "sessionToken", ""), fetch.Credentials{}, otav1.ReasonSourceCredentialsInvalid, `key "sessionToken" is empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sourceCredentials(tc.scheme, "creds", tc.data)
			if tc.reason == "" {
				if err != nil || got == nil || *got != tc.want {
					t.Fatalf("got %#v, %v; want the credentials", got, err)
				}
				return
			}
			sc, ok := asSourceCredentialsError(err)
			if !ok || sc.reason != tc.reason {
				t.Fatalf("error %v, want reason %s", err, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "Secret creds") {
				t.Errorf("message %q should name the Secret and say %q", err, tc.msg)
			}
			for _, v := range tc.data {
				if len(v) >= 4 && strings.Contains(err.Error(), string(v)) && string(v) != "robot" {
					t.Errorf("message %q shows a value", err)
				}
			}
		})
	}
}
