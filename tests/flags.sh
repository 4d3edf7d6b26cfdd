#!/bin/sh
# tests/flags.sh [EXAMPLE...]: walks every flag of every example (issue 16: "every flag an example
# accepts does what it says, or the example refuses it").
#
# The flags are read from each program's --help, so a flag added to a table is walked without
# touching this file. For every flag:
#   - malformed, out-of-range and missing values are refused with exit 2 and a message naming it;
#   - a valid value other than the default changes what the run produces (its files, and its JSON
#     line without timings and without the flag's own echo). A flag that is accepted and changes
#     nothing is the fault this test exists for: it must be honoured or refused.
# The common flags get checks of their own: --threads changes nothing (the library is
# bit-deterministic across thread counts), --save writes a file that --load FILE --steps 0 samples
# from, --out/--save into an unwritable place fail, --minutes stops an unbounded run, --quiet
# leaves only the JSON line, an absurd --batch fails with a message.
#
# Each run is tiny (the BASE arguments below: a step or two, few samples), so the whole walk takes
# a few minutes.
set -u
B=${BUILD:-build}
GENMOD_DATA=${GENMOD_DATA:-$(pwd)/data}     # the runs happen in a scratch directory
export GENMOD_DATA
T=$(mktemp -d /tmp/gm_flags.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0
# A failed check is a "# example: what" line; each example then ends with one PASS or FAIL line.
ok()  { :; }
bad() { echo "# $ex: $*" >>"$T/fails"; }

# The smallest run of each example that still trains, samples and scores (every own flag is
# walked on top of it). An example missing here is refused: add it.
base() {
    case $1 in
    anomaly)     echo "--steps 2" ;;
    autoencoder) echo "--steps 2" ;;
    cyclegan)    echo "--steps 2" ;;
    diffusion)   echo "--steps 1 --sample-steps 2 --score-samples 2 --ddpm 0 --base 8" ;;
    ebm)         echo "--steps 3 --sample-steps 2 --langevin-steps 2 --channels 2 --score 64" ;;
    ffjord2d)    echo "--steps 2 --n-train 64 --n-test 64 --batch 32" ;;
    flow2d)      echo "--steps 2 --samples 16 --n-train 64 --n-test 64 --batch 32" ;;
    flow_images) echo "--steps 2 --samples 4 --n-train 200 --n-test 50" ;;
    gan)         echo "--steps 2 --score-samples 100" ;;
    gan2d)       echo "--steps 2 --loss nonsat" ;;   # --save / --load take one variant
    hmm_signal)  echo "--steps 2" ;;
    made)        echo "--steps 2 --samples 4 --n-train 200 --n-test 50" ;;
    markov_text) echo "--steps 2 --restarts 1 --states 4" ;;
    pixelcnn)    echo "--steps 1 --samples 1 --n-train 200 --n-test 50 --channels 8" ;;
    rbm)         echo "--steps 2 --n-train 200 --n-test 50 --ais-runs 2 --hidden 16" ;;
    score2d)     echo "--steps 2 --langevin-steps 2 --levels 2" ;;
    vae)         echo "--steps 2 --samples 4 --iw-n 20" ;;
    plot_demo)   echo none ;;     # no flags: its one argument is the output directory
    *)           return 1 ;;
    esac
}

# run NAME ARGS...: runs the example into $T/NAME (a fresh out dir); stdout, stderr and exit code
# kept beside it.
run() {
    n=$1; shift
    rm -rf "$T/$n"; mkdir -p "$T/$n"
    ( cd "$T" && timeout 300 "$EXE" --threads 1 --out "$T/$n/out" "$@" >"$T/$n.stdout" 2>"$T/$n.stderr" )
    echo $? >"$T/$n.rc"
}
rc() { cat "$T/$1.rc"; }

# What a run produced, without what may differ between identical runs: timings, memory, logs with
# a time column. $2: a JSON key to leave out (the flag's own echo of its value).
signature() {
    ( cd "$T/$1" && find . -type f ! -name '*.csv' | LC_ALL=C sort | while read -r f; do
          printf '%s %s\n' "$f" "$(cksum <"$f")"; done )
    tail -n 1 "$T/$1.stdout" | tr ',' '\n' |
        grep -v -E '"[a-z0-9_]*(_s|_ms|_mib|seconds|time|speedup)(_[a-z_]*)?"|"threads"|"'"$2"'"'
}

# The flags of the example's table: "name type choices default" per line, from --help.
# type: int (N), float (X), choice (NAME), string (S, DIR, FILE, F), bool (no value).
flags() {
    "$EXE" --help | awk '
        /^  --/ {
            line = $0; sub(/^  --/, "", line)
            name = line; sub(/ .*/, "", name)
            rest = substr(line, length(name) + 1)
            meta = ""
            if (match(rest, /^ (N|X|NAME|S|DIR|FILE|F) /)) { meta = substr(rest, 2, RLENGTH - 2); rest = substr(rest, RLENGTH) }
            def = ""
            if (match(rest, /\[[^]]*\]$/)) { def = substr(rest, RSTART + 1, RLENGTH - 2); rest = substr(rest, 1, RSTART - 1) }
            sub(/ +$/, "", rest)
            choices = "-"
            n = split(rest, parts, ": ")
            if (n > 1 && parts[n] ~ /^[^ ]+$/) choices = parts[n]
            type = meta == "N" ? "int" : meta == "X" ? "float" : meta == "NAME" ? "choice" : meta == "" ? "bool" : "string"
            if (def == "") def = "-"
            print name, type, choices, def
        }'
}

# A value chosen by hand where the rule below would pick one whose effect a tiny run cannot show.
chosen_value() {   # example flag
    case $1:$2 in
    ebm:grad-clip) echo 0.000001 ;;    # the default clamp is not reached in two Langevin steps
    gan2d:loss)    echo minimax ;;     # the base run pins one variant (--save needs one)
    gan2d:noise)   echo 0.1 ;;         # nonsat's own noise is 0
    esac
}

# A valid value other than the default, or nothing when none can be chosen.
other_value() {   # type choices default
    case $1 in
    bool)   [ "$3" = 1 ] && echo 0 || echo 1 ;;
    choice) echo "$2" | tr '|' '\n' | grep -v -x -F "$3" | head -n 1 ;;
    int|float)
        lo=${2%%..*}; hi=${2##*..}
        [ "$2" = - ] && { lo=""; hi=""; }
        awk -v d="$3" -v lo="$lo" -v hi="$hi" -v t="$1" 'BEGIN {
            # 0 is "off" for most float settings, the change most likely to show in a tiny run
            v = (d == 0) ? 1 : (t == "int" ? 2 * d : (lo == "" || lo + 0 <= 0) ? 0 : d / 2)
            if (t == "int" && lo != "" && v < lo + 0) v = lo + 0
            if (hi != "" && v > hi + 0) v = (t == "int") ? d - 1 : (d + hi) / 2
            if (lo != "" && v < lo + 0) exit
            if (v == d) exit
            print v }' ;;
    esac
}

# Values the parser must refuse, one per line.
bad_values() {    # type choices
    case $1 in
    bool)   echo maybe ;;
    choice) echo no-such-choice ;;
    int|float)
        echo 1x
        lo=${2%%..*}; hi=${2##*..}
        [ "$2" = - ] && return
        [ -n "$lo" ] && awk -v v="$lo" 'BEGIN { print v - 1 }'
        [ -n "$hi" ] && awk -v v="$hi" 'BEGIN { print v + 1 }'
        [ "$1" = int ] && echo 2.5 ;;
    esac
}

# The common flags have checks of their own below.
common="data epochs steps batch lr seed threads out save load samples dump-samples minutes quiet help"

has() { grep -q "^$1 " "$T/flags"; }

walk_refusals() {
    cat "$T/flags" | while read -r name type choices def; do
        for v in $(bad_values "$type" "$choices"); do
            "$EXE" "--$name=$v" >/dev/null 2>"$T/refuse.err"
            r=$?
            if [ $r -ne 2 ] || ! grep -q -e "--$name" "$T/refuse.err"; then
                echo "# $ex: --$name=$v was not refused with exit 2 naming the flag (exit $r: $(head -c 200 "$T/refuse.err"))"
            fi
        done
        if [ "$type" != bool ]; then
            "$EXE" "--$name" >/dev/null 2>&1
            [ $? -eq 2 ] || echo "# $ex: --$name without a value was not refused with exit 2"
        fi
    done >"$T/refusals"
    "$EXE" --no-such-flag >/dev/null 2>&1; [ $? -eq 2 ] || echo "# $ex: an unknown flag was not refused with exit 2" >>"$T/refusals"
    "$EXE" stray >/dev/null 2>&1; [ $? -eq 2 ] || echo "# $ex: a stray argument was not refused with exit 2" >>"$T/refusals"
    cat "$T/refusals" >>"$T/fails"
}

# try_value NAME VALUE: prints a complaint, or nothing when --NAME=VALUE is refused naming the
# flag (it does not apply) or changes the output.
try_value() {
    run flag $BASE "--$1=$2"
    r=$(rc flag)
    key=$(echo "$1" | tr '-' '_')
    if [ "$r" = 2 ]; then
        grep -q -e "--$1" "$T/flag.stderr" || echo "# $ex: --$1=$2 exit 2 without naming the flag: $(head -c 200 "$T/flag.stderr")"
    elif [ "$r" != 0 ]; then
        echo "# $ex: --$1=$2 exit $r: $(tail -n 2 "$T/flag.stderr")"
    else
        signature base "$key" >"$T/base_k.sig"
        signature flag "$key" >"$T/flag.sig"
        cmp -s "$T/base_k.sig" "$T/flag.sig" && echo "# $ex: --$1=$2 was accepted and changed nothing"
    fi
}

walk_effects() {
    run base $BASE
    if [ "$(rc base)" != 0 ]; then bad "the base run ($BASE) failed: $(tail -n 3 "$T/base.stderr")"; return 1; fi
    signature base - >"$T/base.sig"
    cat "$T/flags" | while read -r name type choices def; do
        case " $common " in *" $name "*) continue ;; esac
        # what this flag changes is a timing, which no comparison of two runs can check:
        # diffusion --ddpm 1 times the DDPM sampler (ddpm_s_per_image); it is not walked
        [ "$ex:$name" = diffusion:ddpm ] && continue
        if [ "$type" = string ]; then    # a path: a missing one must fail, not be ignored
            run flag $BASE "--$name=$T/no_such_path"
            [ "$(rc flag)" != 0 ] && [ -s "$T/flag.stderr" ] || echo "# $ex: --$name=$T/no_such_path (a missing path) did not fail with a message"
            continue
        fi
        v=$(chosen_value "$ex" "$name")
        [ -z "$v" ] && v=$(other_value "$type" "$choices" "$def")
        [ -z "$v" ] && { echo "# $ex: --$name: no valid value other than the default [$def]"; continue; }
        # a whole-number default below its range is an "auto" (-1: the preset's), which the first
        # other value (the bottom of the range) may equal: a second try at the top of the range
        v2=""
        if [ "$type" = int ] && [ "$(awk -v d="$def" -v lo="${choices%%..*}" 'BEGIN { print (lo != "" && d < lo + 0) }')" = 1 ]; then
            v2=$(echo "$choices" | sed -n 's/^.*\.\.\(-*[0-9][0-9]*\)$/\1/p')
        fi
        verdict=$(try_value "$name" "$v")
        [ -n "$verdict" ] && [ -n "$v2" ] && verdict=$(try_value "$name" "$v2")
        [ -n "$verdict" ] && echo "$verdict"
    done >"$T/effects"
    cat "$T/effects" >>"$T/fails"
}

walk_common() {
    # --threads: the same bits with 2 threads
    run t2 $BASE --threads 2
    signature t2 - >"$T/t2.sig"
    if [ "$(rc t2)" = 0 ] && cmp -s "$T/base.sig" "$T/t2.sig"; then ok; else bad "--threads 2 changed the output (or failed)"; fi
    # --seed, --steps, --lr, --samples change the output
    for fv in "seed=7" "lr=0.0123" "samples=3"; do
        has "${fv%%=*}" || continue
        run c $BASE "--$fv"
        signature c - >"$T/c.sig"
        if [ "$(rc c)" = 2 ] && grep -q -e "--${fv%%=*}" "$T/c.stderr"; then ok    # refused: does not apply
        elif [ "$(rc c)" = 0 ] && ! cmp -s "$T/base.sig" "$T/c.sig"; then ok
        else bad "--$fv changed nothing (or failed: exit $(rc c))"; fi
    done
    # every example keeps what it trained (issue 16)
    has save && has load || bad "does not take --save and --load"
    # --save writes a file; --load it with --steps 0 samples from it (not from a fresh model)
    run s $BASE --save "$T/model.safetensors"
    if [ "$(rc s)" = 0 ] && [ -s "$T/model.safetensors" ]; then ok; else bad "--save wrote no file (exit $(rc s))"; fi
    run l0 $BASE --steps 0
    run l1 $BASE --steps 0 --load "$T/model.safetensors"
    signature l0 - >"$T/l0.sig"; signature l1 - >"$T/l1.sig"
    if [ "$(rc l1)" = 0 ] && ! cmp -s "$T/l0.sig" "$T/l1.sig"; then ok; else bad "--load FILE --steps 0 failed or sampled no differently from an untrained model (exit $(rc l1))"; fi
    # --epochs 0 (no --steps) trains nothing: the same output as --steps 0 (--minutes bounds a run
    # that ignores it)
    if has epochs; then
        run e0 $(echo "$BASE" | sed 's/--steps [0-9]*//') --epochs 0 --minutes 0.05
        signature e0 epochs >"$T/e0.sig"; signature l0 epochs >"$T/l0e.sig"
        if [ "$(rc e0)" = 0 ] && cmp -s "$T/l0e.sig" "$T/e0.sig"; then ok; else bad "--epochs 0 trained (its output differs from --steps 0's; exit $(rc e0))"; fi
    fi
    run l2 $BASE --load "$T/no_such_file.safetensors"
    if [ "$(rc l2)" != 0 ] && [ -s "$T/l2.stderr" ]; then ok; else bad "--load of a missing file did not fail with a message"; fi
    # failures to write are failures
    run w1 $BASE --save /proc/genmod_cannot_write/m.safetensors
    if [ "$(rc w1)" != 0 ] && [ -s "$T/w1.stderr" ]; then ok; else bad "--save into an unwritable place: exit $(rc w1)"; fi
    ( cd "$T" && timeout 300 "$EXE" $BASE --threads 1 --out /proc/genmod_cannot_write >/dev/null 2>"$T/w2.stderr" ); r=$?
    if [ $r -ne 0 ]; then ok; else bad "--out into an unwritable place exited 0"; fi
    if has dump-samples; then
        run d $BASE --dump-samples "$T/dump.idx"
        if [ "$(rc d)" = 0 ] && [ -s "$T/dump.idx" ]; then ok; else bad "--dump-samples wrote no file (exit $(rc d))"; fi
    fi
    run q $BASE --quiet
    if [ "$(rc q)" = 0 ] && [ "$(wc -l <"$T/q.stdout")" -eq 1 ] && ! [ -s "$T/q.stderr" ]; then ok; else bad "--quiet printed more than the JSON line"; fi
    run bb $BASE --batch 100000000
    if [ "$(rc bb)" != 0 ] && [ -s "$T/bb.stderr" ] && ! grep -q "no error" "$T/bb.stderr"; then ok; else bad "--batch 100000000: exit $(rc bb), $(head -c 200 "$T/bb.stderr")"; fi
    run nd $BASE --data "$T/no_such_dir"
    if [ "$(rc nd)" != 0 ] && [ -s "$T/nd.stderr" ]; then ok; else bad "--data of a missing directory did not fail with a message"; fi
    # --minutes stops a run whose step budget would not end
    t0=$(date +%s)
    run m $BASE --steps 1000000000 --minutes 0.02
    took=$(( $(date +%s) - t0 ))
    if [ "$(rc m)" = 0 ] && [ $took -lt 120 ]; then ok; else bad "--minutes 0.02 with an endless --steps: exit $(rc m) after $took s"; fi
}

# xor.c is left out: it is the README's complete program, main(void), and reads no command line.
# More than one example: each is walked by its own run of this script, JOBS (2) at a time, and
# their reports are printed in order.
if [ $# -ne 1 ]; then
    examples=${*:-$(ls examples/*.c | sed 's|examples/||; s|\.c$||' | grep -v -x -e common -e png -e xor)}
    printf '%s\n' $examples | xargs -P "${JOBS:-2}" -I{} sh -c 'sh "$0" {} >"$1/{}.log" 2>&1' "$0" "$T"
    for ex in $examples; do
        grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$T/$ex.log"
        grep -q "^PASS flags_$ex\$" "$T/$ex.log" && pass=$((pass + 1)) || fail=$((fail + 1))
    done
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
fi
ex=$1
EXE=$(pwd)/$B/$ex
start=$(date +%s)
: >"$T/fails"
if ! BASE=$(base "$ex"); then bad "no base run in tests/flags.sh"
elif [ ! -x "$EXE" ]; then bad "$EXE is not built"
elif [ "$BASE" = none ]; then   # flags are refused
    "$EXE" --steps 1 >/dev/null 2>&1; [ $? -eq 2 ] || bad "a flag was not refused with exit 2"
else flags >"$T/flags"; walk_refusals; walk_effects && walk_common; fi
cat "$T/fails"
if [ -s "$T/fails" ]; then echo "FAIL flags_$ex"; fail=1; else echo "PASS flags_$ex"; pass=1; fi
echo "# flags_$ex: $(( $(date +%s) - start )) s"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
