#!/bin/bash
# Zoo workload: a bash script in a loop with scalar, indexed and associative variables,
# until SIGTERM (trapped); then it checks the loop invariants and the variables.
# The protocol of workloads/zoo.h: `--items` prints the number of items checked;
# environment ZOO_READY (FIFO to write "ready" to), ZOO_CORRUPT=N breaks item N after
# ready; one "FAIL: loop.sh: item N: ..." line per failed check, exit 1.
set -u

# The items, numbered as zoo.h wants them.
A_SUM=1     # a == 7 * i
B_SUM=2     # b == i(i+1)/2 mod 1000003
RING=3      # the last ring slot written holds i
SQUARES=4   # the associative array
WORDS=5     # the indexed array
ITEMS=5
if [[ ${1:-} == --items ]]; then
	echo $ITEMS
	exit 0
fi
corrupt=${ZOO_CORRUPT:-0}
if ! [[ $corrupt =~ ^[0-9]+$ ]] || ((corrupt > ITEMS)); then
	echo "ERROR: loop.sh: ZOO_CORRUPT=$corrupt, want 0..$ITEMS" >&2
	exit 2
fi

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
((corrupt == A_SUM)) && ((a += 1))
((corrupt == B_SUM)) && ((b += 1))
((corrupt == SQUARES)) && squares[key7]=0
((corrupt == WORDS)) && words[1]=beta2

while ((!term)); do
	((i += 1))
	((a += 7))
	((b = (b + i) % 1000003))
	ring[i % 64]=$i
done

# The ring is rewritten every turn: it breaks once the loop is left.
((corrupt == RING)) && ((ring[i % 64] += 1))

fail=0
check() {
	if ! eval "$2"; then
		echo "FAIL: loop.sh: item $1: $3" >&2
		fail=1
	fi
}
check $A_SUM '((a == 7 * i))' "a=$a, i=$i"
check $B_SUM '((b == (i * (i + 1) / 2) % 1000003))' "b=$b, i=$i"
check $RING '((ring[i % 64] == i))' "ring[$((i % 64))]=${ring[i % 64]:-unset}, i=$i"
for k in $(seq 1 300); do
	check $SQUARES "((squares[key$k] == k * k))" "squares[key$k]=${squares[key$k]:-unset}"
done
check $WORDS '[[ ${words[*]} == "alpha beta gamma delta epsilon" ]]' "words=${words[*]}"
echo "$i iterations" >&2
if ((fail)); then
	exit 1
fi
echo "PASS: loop.sh" >&2
exit 0
