// A program linking modules from go.mod, for the SBOM's build-information
// test (TestGoModuleChecksums builds it).
package main

import (
	"fmt"

	"golang.org/x/sys/unix"
	"pault.ag/go/debian/version"
)

func main() {
	v, _ := version.Parse("1.0-1")
	fmt.Println(unix.Getpid(), v)
}
