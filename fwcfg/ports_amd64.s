#include "textflag.h"

// func fwcfgSelect(port uint16, key uint16): OUTW key to the selector.
TEXT ·fwcfgSelect(SB), NOSPLIT, $0-4
	MOVW port+0(FP), DX
	MOVW key+2(FP), AX
	OUTW
	RET

// func fwcfgRead(port uint16, buf *byte, n uintptr): REP INSB n bytes
// from the data port into buf.
TEXT ·fwcfgRead(SB), NOSPLIT, $0-24
	MOVW port+0(FP), DX
	MOVQ buf+8(FP), DI
	MOVQ n+16(FP), CX
	CLD
	REP; INSB
	RET
