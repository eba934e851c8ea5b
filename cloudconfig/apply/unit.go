package apply

import _ "embed"

// FirstBootUnit is pithd-firstboot.service, for the image builder to
// install and enable: it runs `pithd firstboot` on every boot.
//
//go:embed pithd-firstboot.service
var FirstBootUnit string

// FirstBootUnitName is the unit's file name.
const FirstBootUnitName = "pithd-firstboot.service"
