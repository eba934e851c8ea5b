#!/usr/bin/env bash
# Side-by-side KV benchmark: a 3-member pithd cluster and a 3-member etcd
# 3.5 cluster (v2 API, --enable-v2), both on 127.0.0.1, measured with the
# same `pithctl bench`, clients spread over all three members of each.
# Both clusters run at once and each measurement alternates between them
# (ROUNDS times), so both see the same machine load. Usage:
#   hack/bench-kv.sh                    (builds etcd $ETCD_VERSION from the Go module proxy, once)
#   hack/bench-kv.sh path/to/etcd       (an etcd 3.5 binary of your own)
#   hack/bench-kv.sh none               (pithd alone)
#   ROUNDS=3 VAL=256 ONLY="put1 put16" hack/bench-kv.sh
#   SCALE=3 ROUNDS=5 ONLY="put1 put16 put256" hack/bench-kv.sh   (3 times the puts per measurement)
#   TLS=1 ONLY="put1 put16 put256" hack/bench-kv.sh   (mutual TLS on every port: one
#       `pith cluster init` CA, member certificates for both clusters, pithctl with admin's)
# Measurements: put1 put16 put256 qget16 get16 watch16 (ONLY picks some).
# Needs: go, bc. Writes data under a temp dir, removed at exit.
set -euo pipefail
ETCD=${1:-}
ETCD_VERSION=${ETCD_VERSION:-v3.5.35}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CACHE:-$HOME/.cache/pith}
if [ -z "$ETCD" ]; then
	# etcd's server module has a main package; built from a scratch module
	# (go install refuses modules with replace directives).
	ETCD=$CACHE/etcd/etcd-$ETCD_VERSION
	if [ ! -x "$ETCD" ]; then
		src=$(mktemp -d)
		(cd "$src" && go mod init etcdbuild >/dev/null 2>&1 &&
			go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 &&
			mkdir -p "$(dirname "$ETCD")" && go build -o "$ETCD" go.etcd.io/etcd/server/v3) ||
			{ echo "building etcd $ETCD_VERSION failed (run in $src by hand to see why)" >&2; exit 1; }
		rm -rf "$src"
	fi
elif [ "$ETCD" = none ]; then
	ETCD=
fi
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
(cd "$ROOT" && go build -o "$TMP/pithd" ./cmd/pithd && go build -o "$TMP/pithctl" ./cmd/pithctl)
CTL="$TMP/pithctl"
SCHEME=http
TLSARGS=()
if [ -n "${TLS:-}" ]; then
	# One cluster CA; n1..n3 certificates serve both clusters (the same
	# files for pithd and etcd), the client is the admin.
	(cd "$ROOT" && go build -o "$TMP/pith" ./cmd/pith)
	"$TMP/pith" cluster init --dir "$TMP/pki" >/dev/null
	for i in 1 2 3; do "$TMP/pith" cluster issue --dir "$TMP/pki" --name "n$i" --ip 127.0.0.1 >/dev/null; done
	export PITHCTL_CACERT=$TMP/pki/ca.crt PITHCTL_CERT=$TMP/pki/admin.crt PITHCTL_KEY=$TMP/pki/admin.key
	SCHEME=https
fi
VAL=${VAL:-256}
ROUNDS=${ROUNDS:-1}
# SCALE multiplies the puts per measurement: a p99 of 20000 puts rests on
# its slowest 200, which a single stall moves.
SCALE=${SCALE:-1}
ONLY=${ONLY:-put1 put16 put256 qget16 get16 watch16}

start_cluster() { # kind baseport
	local kind=$1 base=$2 ic=""
	for i in 1 2 3; do ic+="${ic:+,}n$i=$SCHEME://127.0.0.1:$((base + 10 + i))"; done
	for i in 1 2 3; do
		local args=(--name "n$i" --data-dir "$TMP/$kind$i"
			--listen-client-urls "$SCHEME://127.0.0.1:$((base + i))" --advertise-client-urls "$SCHEME://127.0.0.1:$((base + i))"
			--listen-peer-urls "$SCHEME://127.0.0.1:$((base + 10 + i))" --initial-advertise-peer-urls "$SCHEME://127.0.0.1:$((base + 10 + i))"
			--initial-cluster "$ic" --initial-cluster-token "bench-$kind")
		if [ -n "${TLS:-}" ]; then
			local c=$TMP/pki/n$i
			args+=(--cert-file "$c.crt" --key-file "$c.key" --trusted-ca-file "$TMP/pki/ca.crt" --client-cert-auth
				--peer-cert-file "$c.crt" --peer-key-file "$c.key" --peer-trusted-ca-file "$TMP/pki/ca.crt" --peer-client-cert-auth)
		fi
		if [ "$kind" = pithd ]; then
			"$TMP/pithd" run "${args[@]}" >"$TMP/$kind$i.log" 2>&1 &
		else
			"$ETCD" --enable-v2 "${args[@]}" >"$TMP/$kind$i.log" 2>&1 &
		fi
		PIDS+=($!)
		echo $! >>"$TMP/$kind.pids"
	done
	for _ in $(seq 300); do
		# Leader elected and its client URL published.
		"$CTL" member list --endpoints "$SCHEME://127.0.0.1:$((base + 1))" 2>/dev/null | grep -q 'clientURLs=http.*isLeader=true' && return 0
		sleep 0.2
	done
	echo "$kind cluster did not elect a leader" >&2
	return 1
}

leader_url() { "$CTL" member list --endpoints "$SCHEME://127.0.0.1:$(($1 + 1))" | grep isLeader=true | sed 's/.*clientURLs=\([^ ]*\).*/\1/'; }

# cpu kind: CPU seconds (user+system) the cluster's processes used so far.
cpu() {
	local t=0 p
	for p in $(cat "$TMP/$1.pids"); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "scale=2; $t / $(getconf CLK_TCK)" | bc
}

measure() { # kind baseport what round
	local kind=$1 base=$2 what=$3 round=$4 L ALL
	L=$(leader_url "$base")
	ALL="$SCHEME://127.0.0.1:$((base + 1)),$SCHEME://127.0.0.1:$((base + 2)),$SCHEME://127.0.0.1:$((base + 3))"
	case $what in
	put*)
		local c=${what#put}
		local conns=$((c < 16 ? c : 16)) total=$(((c == 1 ? 2000 : 20000) * SCALE))
		echo "== $kind put clients=$c, all members (round $round)"
		"$CTL" bench put --endpoints "$ALL" --clients "$c" --conns $conns --total $total --val-size "$VAL" --prefix "/bench-$c"
		;;
	qget16)
		echo "== $kind get (quorum) clients=16, all members (round $round)"
		"$CTL" bench get --quorum --endpoints "$ALL" --clients 16 --conns 16 --total 20000 --val-size "$VAL" --prefix /bench-get
		;;
	get16)
		echo "== $kind get (local) clients=16, all members (round $round)"
		"$CTL" bench get --endpoints "$ALL" --clients 16 --conns 16 --total 20000 --val-size "$VAL" --prefix /bench-get
		;;
	watch16)
		echo "== $kind watch 16 watchers (round $round)"
		"$CTL" bench watch --endpoints "$L" --clients 16 --conns 16 --total 2000 --watchers 16 --val-size "$VAL" --prefix /bench-watch
		;;
	*)
		echo "unknown measurement $what (want put1 put16 put256 qget16 get16 watch16)" >&2
		return 1
		;;
	esac
}

start_cluster pithd 24300
if [ -n "$ETCD" ]; then
	start_cluster etcd 24400
fi
# Each measurement also says how much CPU the cluster's three members
# spent on it: on a shared machine, throughput follows from it.
run() { # kind baseport what round
	local before after
	before=$(cpu "$1")
	measure "$@"
	after=$(cpu "$1")
	echo "  Server CPU:   $(echo "$after - $before" | bc) s (3 members)"
}
for what in $ONLY; do
	for round in $(seq "$ROUNDS"); do
		run pithd 24300 "$what" "$round"
		if [ -n "$ETCD" ]; then
			run etcd 24400 "$what" "$round"
		fi
	done
done
