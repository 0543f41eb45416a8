"""Airflow DAG: the t0-clip closed loop, one BashOperator per stage.

Exit codes follow the t0-clip contract: 99 ("nothing to do") skips a task, 3 (refused) and
1 (gate said no) fail it. The first audit may fail by design (heal answers its findings), so
its exit 1 is accepted. Set T0CLIP_BIN (directory of the stage binaries), T0CLIP_ROOT,
T0CLIP_INPUT and T0CLIP_PROJECT (a project directory; default: the built-in clips example) in
the worker's environment. Every stage names its task as the parent run of its OpenLineage
events (`t0clip_lineage`).
"""

from __future__ import annotations

import os
import sys

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

# The DAG processor does not put the DAG folder on the import path: the helper beside us.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from t0clip_lineage import DEFAULT_ARGS, MACROS  # noqa: E402

BIN = os.environ.get("T0CLIP_BIN", "target/debug")
ROOT = os.environ.get("T0CLIP_ROOT", ".t0clip")
INPUT = os.environ.get("T0CLIP_INPUT", "fixtures/clips")
PROJECT = os.environ.get("T0CLIP_PROJECT", "")


def stage(task_id: str, command: str, **kwargs) -> BashOperator:
    return BashOperator(
        task_id=task_id,
        bash_command=f'"{BIN}/{command}" --root "{ROOT}"'
        + (f' --project "{PROJECT}"' if PROJECT else "")
        + kwargs.pop("tail", ""),
        skip_on_exit_code=99,
        # A skipped stage (nothing new) must not skip the rest of the loop.
        trigger_rule="none_failed",
        **kwargs,
    )


with DAG(
    dag_id="t0clip_loop",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["t0-clip"],
    default_args=DEFAULT_ARGS,
    user_defined_macros=MACROS,
) as dag:
    acquire = stage("acquire", "acquire", tail=f' --input "{INPUT}"')
    # Exit 1 (FAIL) is the expected input of heal; anything else is a real failure.
    audit_raw = stage("audit_raw", "audit", tail=' ; rc=$?; [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ] || exit "$rc"')
    heal = stage("heal", "heal")
    audit = stage("audit", "audit")
    certify = stage("certify", "certify")
    labels = stage("labels", "certify", tail=" labels")
    embed = stage("embed", "embed")
    train = stage("train_suite", "train-suite")
    score = stage("score", "score")
    calibrate = stage("calibrate", "calibrate")
    acquire >> audit_raw >> heal >> audit >> certify >> labels >> embed >> train >> score >> calibrate
