#!/bin/sh
# fetch.sh: full MNIST and Fashion-MNIST into data/mnist-full/ and data/fashion-mnist/ (for `make data`).
# Uncompressed IDX files with the original names; sizes are checked. Fashion-MNIST is copied from
# Debian's dataset-fashion-mnist package when it is installed. Exits non-zero with a message if a
# file cannot be had.
set -eu
cd "$(dirname "$0")"

MNIST_MIRRORS="https://ossci-datasets.s3.amazonaws.com/mnist https://storage.googleapis.com/cvdf-datasets/mnist"
FASHION_MIRRORS="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion"
FILES="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"

die() { echo "fetch.sh: $*" >&2; exit 1; }

size_of() { # expected uncompressed size of an MNIST-format file
    case "$1" in
        train-images-idx3-ubyte) echo 47040016 ;;
        train-labels-idx1-ubyte) echo 60008 ;;
        t10k-images-idx3-ubyte) echo 7840016 ;;
        t10k-labels-idx1-ubyte) echo 10008 ;;
    esac
}

check_size() { # file [name, when the file is a .part]
    want=$(size_of "$(basename "${2:-$1}")")
    got=$(wc -c < "$1" | tr -d ' ')
    [ "$got" = "$want" ] || die "$1 has $got bytes, expected $want (corrupt or incomplete download; delete it and retry)"
}

download() { # url output
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 --connect-timeout 15 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -T 15 -t 2 -O "$2" "$1"
    else
        die "neither curl nor wget is installed"
    fi
}

fetch_set() { # dir mirrors
    dir=$1; mirrors=$2
    mkdir -p "$dir"
    for f in $FILES; do
        if [ -f "$dir/$f" ]; then check_size "$dir/$f"; continue; fi
        ok=
        for m in $mirrors; do
            echo "fetch.sh: $m/$f.gz"
            if download "$m/$f.gz" "$dir/$f.gz.part"; then ok=1; break; fi
        done
        [ -n "$ok" ] || { rm -f "$dir/$f.gz.part"; die "cannot download $f.gz from any mirror (no network?). Tried: $mirrors"; }
        gunzip -c "$dir/$f.gz.part" > "$dir/$f.part" || die "$f.gz is not a valid gzip file"
        rm -f "$dir/$f.gz.part"
        check_size "$dir/$f.part" "$f"
        mv "$dir/$f.part" "$dir/$f"
    done
}

copy_debian_fashion() { # returns non-zero when the package is not installed
    command -v dpkg >/dev/null 2>&1 || return 1
    dpkg -L dataset-fashion-mnist >/dev/null 2>&1 || return 1
    mkdir -p fashion-mnist
    for f in $FILES; do
        src=$(dpkg -L dataset-fashion-mnist | grep "/$f\(\.gz\)\?\$" | head -n 1)
        [ -n "$src" ] || die "dataset-fashion-mnist is installed but has no $f"
        case "$src" in
            *.gz) gunzip -c "$src" > "fashion-mnist/$f.part" ;;
            *) cp "$src" "fashion-mnist/$f.part" ;;
        esac
        check_size "fashion-mnist/$f.part" "$f"
        mv "fashion-mnist/$f.part" "fashion-mnist/$f"
    done
    echo "fetch.sh: Fashion-MNIST copied from the dataset-fashion-mnist package"
}

fetch_set mnist-full "$MNIST_MIRRORS"
copy_debian_fashion || fetch_set fashion-mnist "$FASHION_MIRRORS"
echo "fetch.sh: done: data/mnist-full/ and data/fashion-mnist/"
