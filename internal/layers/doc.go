// Package layers holds only tests: the import rules of the repository map
// in README.md that Pith relies on, checked with go list over the module,
// and the size limits of its files and functions.
package layers
