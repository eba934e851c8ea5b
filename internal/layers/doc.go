// Package layers holds only a test: the import rules of the repository map
// in README.md that Pith relies on, checked with go list over the module.
package layers
