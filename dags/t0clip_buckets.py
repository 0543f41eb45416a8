"""Airflow DAGs: t0-clip's loop fanned out over entity buckets (issue 31).

t0clip_ingest_buckets: acquire -> audit -> heal -> audit, each stage mapped over the buckets
`plan` lists (dynamic task mapping: one task per bucket, run by whatever executor the
deployment uses — Local, Celery, Kubernetes) and followed by `commit`, the single writer that
verifies every bucket's run and records the stage's outputs (and an audit's canonical tables)
joined in the base root. A passing audit's commit exports the population it passed and
updates the `commits/audit` asset.

t0clip_daily_buckets, scheduled on that asset: certify on every bucket (each reads the
committed population and certifies its own entities), then `commit certify`, which joins the
surfaces; then `certify labels` and `embed` on every bucket, each committed. Each of these
commits also gathers the buckets' outputs into one run of the base root (the surfaces, the
labels, the vectors: each the union of the buckets' rows), so train-suite, score and
calibrate run after them on the base root, as on a root that was never split: train-suite and
calibrate need every training row at once, and score's drift and row selection are the
population's.

Exit codes follow the t0-clip contract: 99 ("nothing to do") skips a task; 3 (refused: a bucket
missing, stale or tampered) and 1 (a gate said no) fail it. The first audit may fail by design
(heal answers its findings), so its exit 1 and its commit's are accepted. No task retries: the
only transient failure is a lock another run holds, and `--lock-wait` waits for it instead; a
refusal or a gate never passes on a retry.

Every stage names its task as the parent run of its OpenLineage events (`t0clip_lineage`).

Environment of the workers: T0CLIP_BIN (directory of the stage binaries), T0CLIP_ROOT (on a
filesystem every worker shares), T0CLIP_INPUT, T0CLIP_BUCKETS (default 4), T0CLIP_PROJECT
(default: the built-in clips example), T0CLIP_NOW (optional pinned clock), T0CLIP_LOCK_WAIT
(seconds, default 600).
"""

from __future__ import annotations

import json
import os
import shlex
import sys

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Asset, task

# The DAG processor does not put the DAG folder on the import path: the helper beside us.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from t0clip_lineage import DEFAULT_ARGS, MACROS  # noqa: E402

BIN = os.environ.get("T0CLIP_BIN", "target/debug")
ROOT = os.environ.get("T0CLIP_ROOT", ".t0clip")
INPUT = os.environ.get("T0CLIP_INPUT", "fixtures/clips")
BUCKETS = int(os.environ.get("T0CLIP_BUCKETS", "4"))
PROJECT = os.environ.get("T0CLIP_PROJECT", "")
NOW = os.environ.get("T0CLIP_NOW", "")
LOCK_WAIT = os.environ.get("T0CLIP_LOCK_WAIT", "600")

# Downstream DAGs schedule on this: fresh, audited canonical data, committed.
AUDITED = Asset(f"file://{os.path.abspath(ROOT)}/commits/audit")
CERTIFIED = Asset(f"file://{os.path.abspath(ROOT)}/commits/certify")


def command(binary: str, *args: str, ok: tuple[int, ...] = ()) -> str:
    """The shell line for one binary; exit codes in `ok` count as success."""
    line = [f"{BIN}/{binary}", "--root", ROOT, "--lock-wait", LOCK_WAIT, *args]
    if PROJECT:
        line += ["--project", PROJECT]
    if NOW:
        line += ["--now", NOW]
    text = " ".join(shlex.quote(a) for a in line)
    if ok:
        accepted = " || ".join(f'[ "$rc" -eq {c} ]' for c in (0, *ok))
        text += f'; rc=$?; {accepted} || exit "$rc"'
    return text


@task
def bucket_commands(plan: str, binary: str, extra: list[str], ok: list[int]) -> list[str]:
    """One command per bucket `plan` listed (its --json object is the last line of stdout)."""
    work = json.loads(plan.strip().splitlines()[-1])["work"]
    return [command(binary, "--bucket", b, *extra, ok=tuple(ok)) for b in work]


def fan_out(
    name: str,
    binary: str,
    extra: list[str] = (),
    ok: tuple[int, ...] = (),
    commit: bool = True,
    stage: str | None = None,
):
    """plan -> the stage on each listed bucket -> commit, chained; returns (first, last).

    `stage` is the stage's name where it is not the binary's (`certify labels`: labels).
    """
    stage_name = stage or binary
    plan = BashOperator(
        task_id=f"plan_{name}",
        bash_command=command("plan", stage_name, "--buckets", str(BUCKETS), "--json", "--quiet"),
        do_xcom_push=True,
        trigger_rule="none_failed",
    )
    stage = BashOperator.partial(
        task_id=name,
        skip_on_exit_code=99,
        trigger_rule="none_failed",
        retries=0,
    ).expand(bash_command=bucket_commands(plan.output, binary, list(extra), list(ok)))
    plan >> stage
    if not commit:
        return plan, stage
    commit = BashOperator(
        task_id=f"commit_{name}",
        bash_command=command("commit", stage_name, "--buckets", str(BUCKETS), ok=ok),
        skip_on_exit_code=99,
        trigger_rule="none_failed",
        retries=0,
    )
    stage >> commit
    return plan, commit


with DAG(
    dag_id="t0clip_ingest_buckets",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["t0-clip", "buckets"],
    default_args=DEFAULT_ARGS,
    user_defined_macros=MACROS,
) as dag:
    acquire = fan_out("acquire", "acquire", ["--input", INPUT])
    # Exit 1 (FAIL) is the expected input of heal; anything else is a real failure.
    audit_raw = fan_out("audit_raw", "audit", ok=(1,))
    # Heal answers only the buckets whose audit failed (the others exit 99, skipped), so it is
    # not committed on its own: the audit after it commits the healed tables it passed.
    heal = fan_out("heal", "heal", commit=False)
    audit = fan_out("audit", "audit")
    audit[1].outlets = [AUDITED]
    acquire[1] >> audit_raw[0]
    audit_raw[1] >> heal[0]
    heal[1] >> audit[0]

with DAG(
    dag_id="t0clip_daily_buckets",
    schedule=[AUDITED],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["t0-clip", "buckets"],
    default_args=DEFAULT_ARGS,
    user_defined_macros=MACROS,
) as daily:
    certify = fan_out("certify", "certify")
    labels = fan_out("labels", "certify", ["labels"], stage="labels")
    certify[1] >> labels[0]
    labels[1].outlets = [CERTIFIED]
    embed = fan_out("embed", "embed")
    labels[1] >> embed[0]
    # On the base root. A skipped embed commit (99: nothing new) skips them; calibrate's exit
    # 1 (BLOCK) fails its task, as a gate should.
    model = [
        BashOperator(task_id=s.replace("-", "_"), bash_command=command(s), skip_on_exit_code=99, retries=0)
        for s in ("train-suite", "score", "calibrate")
    ]
    embed[1] >> model[0] >> model[1] >> model[2]
