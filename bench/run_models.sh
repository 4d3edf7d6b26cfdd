#!/bin/sh
# run_models.sh: training throughput of genmod's model families against the PyTorch references
# (shared/baselines/torch_<model>.py, same architectures, batch sizes and random data shapes),
# measured in the same run and interleaved, because this machine's speed drifts by up to 2x
# within seconds.
#
#   sh bench/run_models.sh            (from the repository root; `make bench` runs it)
#
# For BENCH_ROUNDS rounds (default 3), for each model and thread count (1, 2): genmod
# (build/bench_models MODEL T BENCH_SECONDS: 0.5 s warm-up, FMA probe, >= BENCH_SECONDS of steps,
# FMA probe) and the torch script (--windows 1 --window-secs 2 --warmup-secs 2; 2 threads with
# OMP_WAIT_POLICY=PASSIVE, PyTorch's best 2-thread configuration per the baselines README) run
# back to back; odd rounds run genmod first, even rounds torch first. The ratio genmod/torch is
# taken inside each round; the table shows medians over rounds.
#   MFU     model FLOPs/s (gm_graph_flops differences of the model's own graph over the timed
#           steps) / the FMA peak probed for that thread count just before and after the steps.
#   RSS     genmod: getrusage ru_maxrss of the bench_models process (one process per model and
#           thread count, so it is that model's peak); torch: the script's peak_rss_mib (about
#           230-270 MiB of it is `import torch`).
#   samples/s  real examples consumed per second; for the GANs one sample batch per D step, so
#           WGAN-GP counts 5 critic batches per generator step (as torch_wgangp.py does).
# Appends JSON lines to out/bench.jsonl: <model>_train_samples_t<T> (ref_name pytorch, ref_value,
# ratio_to_ref), <model>_train_mfu_t<T>, <model>_train_peak_rss_t<T>, wgangp_train_critic_steps_t<T>.
#   ffjord  has no PyTorch reference: its row shows genmod alone and its function evaluations/s.
# Environment: BENCH_ROUNDS (3), BENCH_SECONDS (2), BENCH_MODELS ("ae vae gan dcgan wgangp realnvp ffjord"),
# BENCH_THREADS ("1 2"), GM_BASELINES (../shared/baselines), PYTHON (/usr/bin/python3).
set -u
cd "$(dirname "$0")/.." || exit 1

ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-2}
MODELS=${BENCH_MODELS:-"ae vae gan dcgan wgangp realnvp ffjord"}
THREADS=${BENCH_THREADS:-"1 2"}
BASE=${GM_BASELINES:-../shared/baselines}
PY=${PYTHON:-/usr/bin/python3}
BIN=build/bench_models
JSONL=out/bench.jsonl
TMO=""
command -v timeout >/dev/null 2>&1 && TMO="timeout 180"

mkdir -p build out
# (Re)build when missing or older than its sources.
stale=1
if [ -x "$BIN" ]; then
    stale=0
    for f in bench/bench_models.c bench/bench_util.h genmod*.h; do
        [ "$f" -nt "$BIN" ] && stale=1
    done
fi
if [ "$stale" = 1 ]; then
    echo "building $BIN"
    ${CC:-cc} -O2 -std=c99 -Wall -Wextra -Wpedantic -I. bench/bench_models.c -o "$BIN" -lm -lpthread || exit 1
fi

HAVE_TORCH=1
if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
    HAVE_TORCH=0
    echo "pytorch not installed (apt-get install python3-torch): reference skipped"
fi

TMP=$(mktemp -d 2>/dev/null || echo /tmp/gm_run_models.$$)
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT INT TERM
REC="$TMP/rounds.txt"
: >"$REC"

# jget JSON KEY: the number after "KEY": with at most 4 decimals (nan if absent)
jget() {
    v=$(printf '%s\n' "$1" | sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" | head -n 1)
    [ -n "$v" ] && awk -v v="$v" 'BEGIN { s = sprintf("%.4f", v); sub(/0+$/, "", s); sub(/\.$/, "", s); print s }' || echo nan
}
# div A B: A/B with 4 decimals, nan if either is missing or B is 0
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "nan"; else printf "%.4f\n", a / b }'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "nan") print "-"; else printf f "\n", v }'; }
label() {
    case $1 in
        ae) echo "dense AE (b256, RMSProp)" ;;
        vae) echo "dense VAE (b100, Adam)" ;;
        gan) echo "MLP GAN (b100)" ;;
        dcgan) echo "DCGAN 28x28 (b64)" ;;
        wgangp) echo "WGAN-GP MLP (b64, 5 critic)" ;;
        realnvp) echo "RealNVP moons (b256)" ;;
        ffjord) echo "FFJORD moons (b256, RK4x8)" ;;
        *) echo "$1" ;;
    esac
}

run_ours() { # model threads -> JSON line or empty
    $TMO "$BIN" "$1" "$2" "$SECS" 2>"$TMP/err" | tail -n 1
}
run_torch() { # model threads -> JSON line or empty
    [ "$HAVE_TORCH" = 1 ] && [ -f "$BASE/torch_$1.py" ] || return 0
    if [ "$2" -gt 1 ]; then
        OMP_WAIT_POLICY=PASSIVE $TMO "$PY" "$BASE/torch_$1.py" --threads "$2" --windows 1 --window-secs 2 \
            --warmup-secs 2 2>"$TMP/terr" | sed -n 's/^JSON //p' | tail -n 1
    else
        (unset OMP_WAIT_POLICY; $TMO "$PY" "$BASE/torch_$1.py" --threads "$2" --windows 1 --window-secs 2 \
            --warmup-secs 2 2>"$TMP/terr" | sed -n 's/^JSON //p' | tail -n 1)
    fi
}

echo "model training throughput: genmod vs PyTorch (same run, $ROUNDS interleaved rounds, ${SECS}s genmod / 2s torch windows)"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for m in $MODELS; do
        for t in $THREADS; do
            if [ $((r % 2)) = 1 ]; then
                ours=$(run_ours "$m" "$t"); ref=$(run_torch "$m" "$t")
            else
                ref=$(run_torch "$m" "$t"); ours=$(run_ours "$m" "$t")
            fi
            if [ -z "$ours" ]; then
                echo "  bench_models $m $t failed: $(tail -n 2 "$TMP/err" 2>/dev/null)"
            fi
            if [ "$HAVE_TORCH" = 1 ] && [ -f "$BASE/torch_$m.py" ] && [ -z "$ref" ]; then
                echo "  torch_$m.py --threads $t failed: $(tail -n 2 "$TMP/terr" 2>/dev/null)"
            fi
            o_sps=$(jget "$ours" samples_per_s); o_crit=$(jget "$ours" critic_steps_per_s)
            [ "$m" = ffjord ] && o_crit=$(jget "$ours" nfe_per_s)
            o_mfu=$(jget "$ours" mfu); o_peak=$(jget "$ours" peak_gflops); o_rss=$(jget "$ours" rss_mib)
            o_gf=$(jget "$ours" gflop_per_step)
            r_sps=$(jget "$ref" samples_per_s_median); r_rss=$(jget "$ref" peak_rss_mib)
            r_crit=$(jget "$ref" critic_steps_per_s_median)
            [ "$m" = wgangp ] || r_crit=$(jget "$ref" steps_per_s_median)
            ratio=$(div "$o_sps" "$r_sps"); cratio=$(div "$o_crit" "$r_crit")
            echo "$m $t $o_sps $o_crit $o_mfu $o_peak $o_rss $o_gf $r_sps $r_crit $r_rss $ratio $cratio" >>"$REC"
            printf '  round %d/%d %-8s t%d: genmod %8s samples/s  pytorch %8s  ratio %6s  mfu %6s  peak %4s GFLOP/s\n' \
                "$r" "$ROUNDS" "$m" "$t" "$(fmt "$o_sps" %.0f)" "$(fmt "$r_sps" %.0f)" "$(fmt "$ratio" %.2fx)" \
                "$(fmt "$o_mfu" %.3f)" "$(fmt "$o_peak" %.0f)"
        done
    done
    r=$((r + 1))
done

# med MODEL T COLUMN: median over rounds of one column of the records (nan if none)
med() {
    awk -v m="$1" -v t="$2" -v c="$3" '$1 == m && $2 == t && $c != "nan" { print $c }' "$REC" | sort -n |
        awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2];
              else printf "%.4f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

echo
printf '%-28s %3s | %10s %10s %7s | %6s %7s %8s | %8s %8s\n' "model" "thr" "genmod" "pytorch" "ratio" \
    "MFU" "peak" "GFLOP/st" "RSS MiB" "torch"
printf '%-28s %3s | %10s %10s %7s | %6s %7s %8s | %8s %8s\n' "" "" "samples/s" "samples/s" "" "" "GFLOP/s" "" \
    "genmod" "RSS MiB"
for m in $MODELS; do
    for t in $THREADS; do
        sps=$(med "$m" "$t" 3); crit=$(med "$m" "$t" 4); mfu=$(med "$m" "$t" 5); peak=$(med "$m" "$t" 6)
        rss=$(med "$m" "$t" 7); gf=$(med "$m" "$t" 8); rsps=$(med "$m" "$t" 9); rcrit=$(med "$m" "$t" 10)
        rrss=$(med "$m" "$t" 11); ratio=$(med "$m" "$t" 12); cratio=$(med "$m" "$t" 13)
        printf '%-28s %3s | %10s %10s %7s | %6s %7s %8s | %8s %8s\n' "$(label "$m")" "$t" "$(fmt "$sps" %.0f)" \
            "$(fmt "$rsps" %.0f)" "$(fmt "$ratio" %.2fx)" "$(fmt "$(awk -v v="$mfu" 'BEGIN { if (v == "nan") print v; else print 100 * v }')" %.1f%%)" \
            "$(fmt "$peak" %.0f)" "$(fmt "$gf" %.3f)" "$(fmt "$rss" %.0f)" "$(fmt "$rrss" %.0f)"
        if [ "$m" = ffjord ]; then
            printf '%-28s %3s | %10s %10s %7s |   function evaluations/s\n' "" "" "$(fmt "$crit" %.0f)" "-" "-"
            [ "$crit" != nan ] && echo "{\"name\": \"ffjord_nfe_per_s_t$t\", \"value\": $crit, \"unit\": \"evaluations/s\"}" >>"$JSONL"
        fi
        if [ "$m" = wgangp ]; then
            printf '%-28s %3s | %10s %10s %7s |   critic steps/s\n' "" "" "$(fmt "$crit" %.1f)" "$(fmt "$rcrit" %.1f)" \
                "$(fmt "$cratio" %.2fx)"
        fi
        # JSON lines
        if [ "$HAVE_TORCH" = 1 ] && [ "$rsps" != nan ]; then
            refs=", \"ref_name\": \"pytorch\", \"ref_value\": $rsps, \"ratio_to_ref\": $ratio"
        else
            refs=""
        fi
        [ "$sps" != nan ] && echo "{\"name\": \"${m}_train_samples_t$t\", \"value\": $sps, \"unit\": \"samples/s\"$refs, \"rounds\": $ROUNDS}" >>"$JSONL"
        [ "$mfu" != nan ] && echo "{\"name\": \"${m}_train_mfu_t$t\", \"value\": $mfu, \"unit\": \"fraction\", \"peak_gflops\": $peak, \"gflop_per_step\": $gf}" >>"$JSONL"
        if [ "$HAVE_TORCH" = 1 ] && [ "$rrss" != nan ]; then
            refs=", \"ref_name\": \"pytorch\", \"ref_value\": $rrss, \"ratio_to_ref\": $(div "$rss" "$rrss")"
        else
            refs=""
        fi
        [ "$rss" != nan ] && echo "{\"name\": \"${m}_train_peak_rss_t$t\", \"value\": $rss, \"unit\": \"MiB\", \"measure\": \"ru_maxrss of a per-model process\"$refs}" >>"$JSONL"
        if [ "$m" = wgangp ] && [ "$crit" != nan ]; then
            if [ "$HAVE_TORCH" = 1 ] && [ "$rcrit" != nan ]; then
                refs=", \"ref_name\": \"pytorch\", \"ref_value\": $rcrit, \"ratio_to_ref\": $cratio"
            else
                refs=""
            fi
            echo "{\"name\": \"wgangp_train_critic_steps_t$t\", \"value\": $crit, \"unit\": \"steps/s\"$refs}" >>"$JSONL"
        fi
    done
done
echo "ratio: genmod/pytorch samples/s, median of the per-round ratios; pytorch 2 threads with OMP_WAIT_POLICY=PASSIVE."
echo "MFU: matmul/conv FLOPs per second / FMA peak probed in the same round; RSS: peak of a per-model process."
echo "JSON lines appended to $JSONL"
