package channels

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

//go:embed dashboard.html
var dashboardHTML string

// dashboardTmpl is parsed on first use, not at init: every pithd and
// pithctl start (three on a node's path to SSH) would otherwise parse it,
// ~0.3 MB of allocations that cost a tenth of a second under QEMU TCG.
var dashboardTmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("dashboard").Funcs(template.FuncMap{
		"pct":   func(f float64) string { return fmt.Sprintf("%.1f%%", f) },
		"ago":   ago,
		"chart": versionChart,
		"lower": func(s RolloutState) string { return strings.ToLower(string(s)) },
	}).Parse(dashboardHTML))
})

type dashboardData struct {
	*FleetView
	BodyOnly bool
}

func renderDashboard(w io.Writer, v *FleetView, bodyOnly bool) error {
	name := "page"
	if bodyOnly {
		name = "body"
	}
	return dashboardTmpl().ExecuteTemplate(w, name, dashboardData{FleetView: v, BodyOnly: bodyOnly})
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

// chartSVG is a server-rendered line chart: one line per version.
type chartSVG struct {
	W, H  int
	BaseY int
	Lines []chartLine
	Max   int
	From  string
	To    string
}

type chartLine struct {
	Version string
	Color   string
	Points  string
	LabelY  int
}

var chartColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

// versionChart draws the channel's machines per version over the history.
func versionChart(channel string, hist []Sample) *chartSVG {
	const w, h, pad = 640, 160, 4
	var samples []Sample
	for _, s := range hist {
		if s.Counts[channel] != nil {
			samples = append(samples, s)
		}
	}
	if len(samples) == 0 {
		return nil
	}
	vers := map[string]bool{}
	maxN := 1
	for _, s := range samples {
		for v, n := range s.Counts[channel] {
			vers[v] = true
			maxN = max(maxN, n)
		}
	}
	order := slices.Collect(maps.Keys(vers))
	slices.SortFunc(order, func(a, b string) int {
		c, err := CompareVersions(a, b)
		if err != nil {
			return strings.Compare(a, b)
		}
		return c
	})
	c := &chartSVG{W: w, H: h, BaseY: h - pad, Max: maxN, From: samples[0].Time.Format("15:04"), To: samples[len(samples)-1].Time.Format("15:04")}
	x := func(i int) float64 {
		if len(samples) == 1 {
			return w - pad
		}
		return pad + float64(i)*float64(w-2*pad)/float64(len(samples)-1)
	}
	y := func(n int) float64 { return float64(h-pad) - float64(n)*float64(h-2*pad)/float64(maxN) }
	for i, v := range order {
		var b strings.Builder
		for j, s := range samples {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(j), y(s.Counts[channel][v]))
		}
		last := samples[len(samples)-1].Counts[channel][v]
		c.Lines = append(c.Lines, chartLine{Version: v, Color: chartColors[i%len(chartColors)], Points: strings.TrimSpace(b.String()), LabelY: int(y(last))})
	}
	return c
}
