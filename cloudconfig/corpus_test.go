package cloudconfig

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// parseWants reads expectations, one per line: "LINE:COL severity text".
// YAML files carry them as "# want: ..." comments; any file may have a
// NAME.want beside it.
func parseWants(t *testing.T, data []byte, prefix string) []want {
	var out []want
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		f := strings.SplitN(strings.TrimSpace(strings.TrimPrefix(l, prefix)), " ", 3)
		ls, cs, ok := strings.Cut(f[0], ":")
		line, err1 := strconv.Atoi(ls)
		col, err2 := strconv.Atoi(cs)
		if !ok || len(f) != 3 || err1 != nil || err2 != nil {
			t.Fatalf("bad want line %q", l)
		}
		out = append(out, want{line, col, Severity(f[1]), f[2]})
	}
	return out
}

// TestCorpus checks every file in testdata/corpus: its report must be
// exactly the expectations it declares (none for a clean file).
func TestCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/corpus/*")
	if err != nil || len(files) == 0 {
		t.Fatal("empty corpus")
	}
	for _, p := range files {
		if strings.HasSuffix(p, ".want") {
			continue
		}
		t.Run(filepath.Base(p), func(t *testing.T) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			wants := parseWants(t, data, "# want:")
			if side, err := os.ReadFile(p + ".want"); err == nil {
				wants = append(wants, parseWants(t, side, "")...)
			}
			sortWants(wants)
			checkReport(t, Validate(data), wants)
		})
	}
}

func sortWants(w []want) {
	for i := 1; i < len(w); i++ {
		for j := i; j > 0 && (w[j].line < w[j-1].line || (w[j].line == w[j-1].line && w[j].col < w[j-1].col)); j-- {
			w[j], w[j-1] = w[j-1], w[j]
		}
	}
}
