// Package configs is the gateway's configuration: the typed schema of the
// YAML contract (docs/architecture.md, "Config contract"), loading with
// viper (flags > GATEWAY_* env > YAML file > defaults), and validation whose
// messages name the offending key.
//
// The default configuration, gateway.yaml, is embedded and doubles as the
// commented reference for every key. Viper stops here: every other package
// receives the typed structs. Unknown keys are errors, so that a typo can never
// silently switch encryption off.
package configs
