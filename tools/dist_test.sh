#!/usr/bin/env bash
# Distributed testing with torchrun (torch.distributed.launch is deprecated).
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# GPUS is the number of processes on this node (without CUDA: CPU processes on gloo).
# `python -m torch.distributed.run` is torchrun (same entry point) with the chosen $PYTHON.
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as in mmdet's script.
# CHECKPOINT loads weights-only (fade_mm's allow-list of runner-checkpoint globals); a
# trusted file that needs more: add --trust-checkpoint.
set -euo pipefail

if [ "$#" -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py args...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
TOOLS_DIR="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$GPUS" \
    "$TOOLS_DIR/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
