#!/usr/bin/env bash
# Rebuild the shipped nb201-digits table (src/nasflow/benchmarks/data/nb201_digits.csv.gz).
#
# Trains ARCHS distinct NB201 networks (8 channels, 1 cell per stage) for 4 epochs on the digits task,
# one torch thread per network, seed 0. Resumable: rerun after an interruption (the study lives in
# $BUILD_DIR/nb201_digits.csv.gz.db). Results are deterministic on CPU for a given torch version, except
# the train_seconds column. Afterwards, put the printed SHA-256 into DIGITS_SHA256 in
# src/nasflow/benchmarks/digits.py.
#
# Usage: benchmarks/tools/build_digits_table.sh [BUILD_DIR]   (default: build/nb201-digits)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR="${1:-build/nb201-digits}"
ARCHS="${ARCHS:-800}"
WORKERS="${WORKERS:-1}"
mkdir -p "$BUILD_DIR"
nasflow bench build --space nb201 --task digits --channels 8 --cells-per-stage 1 --epochs 4 \
    --archs "$ARCHS" --seed 0 --threads 1 --workers "$WORKERS" --output "$BUILD_DIR/nb201_digits.csv.gz" "${@:2}"
cp "$BUILD_DIR/nb201_digits.csv.gz" src/nasflow/benchmarks/data/nb201_digits.csv.gz
sha256sum src/nasflow/benchmarks/data/nb201_digits.csv.gz
