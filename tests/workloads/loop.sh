#!/bin/bash
# Zoo workload: a bash script in a loop with scalar, indexed and associative variables,
# until SIGTERM (trapped); then it checks the loop invariants and the variables.
# Environment: ZOO_READY (FIFO to write "ready" to), ZOO_CORRUPT=1 damages the state.
set -u

term=0
trap 'term=1' TERM

declare -A squares
for k in $(seq 1 300); do
	squares[key$k]=$((k * k))
done
words=(alpha beta gamma delta epsilon)
i=0 a=0 b=0
ring=()

if [[ -n ${ZOO_READY:-} ]]; then
	echo ready >"$ZOO_READY"
else
	echo ready
fi
if [[ ${ZOO_CORRUPT:-0} == 1 ]]; then
	squares[key7]=0
fi

while ((!term)); do
	((i += 1))
	((a += 7))
	((b = (b + i) % 1000003))
	ring[i % 64]=$i
done

fail=0
check() {
	if ! eval "$1"; then
		echo "FAIL: loop.sh: $2" >&2
		fail=1
	fi
}
check '((a == 7 * i))' "a=$a, i=$i"
check '((b == (i * (i + 1) / 2) % 1000003))' "b=$b, i=$i"
check '((ring[i % 64] == i))' "ring[$((i % 64))]=${ring[i % 64]:-unset}, i=$i"
for k in $(seq 1 300); do
	check "((squares[key$k] == k * k))" "squares[key$k]=${squares[key$k]:-unset}"
done
check '[[ ${words[*]} == "alpha beta gamma delta epsilon" ]]' "words=${words[*]}"
echo "$i iterations" >&2
if ((fail)); then
	exit 1
fi
echo "PASS: loop.sh" >&2
exit 0
