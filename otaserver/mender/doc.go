// Package mender serves the Mender device API that mender-client 3.x
// speaks (docs/mender.md), beside the native device API and over the same
// rules and store: an authentication request signed with the device's key
// registers it through a DeviceEnrollment and yields a short-lived JWT;
// deployments/next is a check-in decided by otaserver.Server.Decide;
// status reports go through otaserver.Server.Report; the artifact is
// streamed as plaintext from the encrypted blob behind a short-lived link.
// Like the DDI front, it keeps no rules and no state of its own.
package mender
