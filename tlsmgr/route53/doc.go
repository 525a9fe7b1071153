// Package route53 is a libdns provider for Amazon Route 53, used by the
// gateway to publish ACME DNS-01 challenge records through certmagic's
// DNS01Solver. It writes TXT (and other simple) record sets with UPSERT and
// DELETE change batches and waits until Route 53 reports the change INSYNC
// on its authoritative servers (GetChange); the hosted zone is configured or
// found from the record's name (ListHostedZonesByName, public zones first).
//
// Credentials come only from the AWS SDK's default chain (environment,
// shared config and credentials files, web identity, the EC2 instance role
// through IMDSv2); the provider never logs them or puts them in an error.
// It does not create hosted zones, and alias or routing-policy record sets
// are outside what it reads or writes.
package route53
