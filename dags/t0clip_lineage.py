"""The OpenLineage parent run of a t0-clip stage started by an Airflow task (issue 32).

Every BashOperator of the t0-clip DAGs passes `T0CLIP_LINEAGE_PARENT` to the stage binary,
which names it as the parent run of its OpenLineage events. With Airflow's OpenLineage
provider installed, the value is the provider's own `lineage_parent_id` (the run the provider
reports for the task, so lineage platforms join the two); without it, a parent that names
the DAG and task as the provider would (`<namespace>/<dag_id>.<task_id>/<uuid>`), its UUID
derived from the DAG run, task, map index and try, so a retried or re-mapped task is another
parent.

Not a DAG: the DAG files beside it import it (each puts its own folder on the path).
"""

from __future__ import annotations

import os
import uuid

# The namespace of the Airflow jobs, as the provider's `OPENLINEAGE_NAMESPACE` sets it.
NAMESPACE = os.environ.get("OPENLINEAGE_NAMESPACE", "default")


def parent_id(task_instance) -> str:
    """`namespace/job/run-uuid` of the task instance running the stage."""
    try:
        from airflow.providers.openlineage.plugins.macros import lineage_parent_id
    except ImportError:
        lineage_parent_id = None
    if lineage_parent_id is not None:
        return lineage_parent_id(task_instance)
    ti = task_instance
    seed = f"t0clip-airflow:{ti.dag_id}|{ti.task_id}|{ti.run_id}|{ti.map_index}|{ti.try_number}"
    return f"{NAMESPACE}/{ti.dag_id}.{ti.task_id}/{uuid.uuid5(uuid.NAMESPACE_URL, seed)}"


# What every DAG of t0-clip sets: the macro, and the environment the stages read it from.
MACROS = {"t0clip_parent": parent_id}
DEFAULT_ARGS = {"env": {"T0CLIP_LINEAGE_PARENT": "{{ t0clip_parent(task_instance) }}"}, "append_env": True}
