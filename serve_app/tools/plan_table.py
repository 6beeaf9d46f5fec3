"""`python -m serve_app plan CONFIG [--gpu CARD]`: a Serve config's GPU plan as a table.

Reads the whole YAML (the app `args` carry the gpu_plan; the `deployments:` list
carries replica counts), checks the plan on the planned card or on `--gpu`, and
counts the cards it needs at min and at max scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from serve_app.common.gpu_plan import card_memory_gb, gpus_needed
from serve_app.config import AppConfig, ConfigError, parse_app_config


@dataclass
class Row:
    name: str
    num_gpus: float
    num_cpus: float
    budget_gb: float | None
    min_replicas: int
    max_replicas: int


@dataclass
class Plan:
    app: str
    card: str | None  # None: no gpu_plan and no --gpu
    context_gb: float
    rows: list[Row]
    problems: list[str]

    def cards(self, at: str) -> int:
        return gpus_needed([r.num_gpus for r in self.rows for _ in range(getattr(r, f"{at}_replicas"))])

    def total(self, attribute: str, at: str) -> float:
        return sum(getattr(r, attribute) * getattr(r, f"{at}_replicas") for r in self.rows)


def replica_range(options: dict) -> tuple[int, int]:
    autoscaling = options.get("autoscaling_config")
    if autoscaling:
        low = autoscaling.get("min_replicas", 1)
        return low, max(low, autoscaling.get("max_replicas", 1))
    count = options.get("num_replicas", 1)
    return (1, 100) if count == "auto" else (count, count)


def plan_application(app: dict, card: str | None) -> Plan:
    config: AppConfig = parse_app_config(app.get("args") or {})
    listed = {d["name"]: d for d in app.get("deployments") or []}
    plan = config.gpu_plan
    budgets = plan.deployments if plan else {}
    card = card or (plan.gpu if plan else None)
    problems = plan.violations(card) if plan else []
    rows = []
    for name in dict.fromkeys([*listed, *budgets]):
        options = listed.get(name, {})
        actor = options.get("ray_actor_options") or {}
        budget = budgets.get(name)
        if budget is not None and actor:
            problems.append(
                f"{name}: ray_actor_options in the deployments list would replace the gpu_plan's "
                f"num_gpus {budget.num_gpus:g}; move num_cpus into gpu_plan.deployments.{name} and remove it"
            )
        low, high = replica_range(options)
        rows.append(
            Row(
                name=name,
                num_gpus=budget.num_gpus if budget else actor.get("num_gpus", 0.0),
                num_cpus=budget.num_cpus if budget else actor.get("num_cpus", 1.0),
                budget_gb=budget.budget_gb(plan.card_gb) if budget else None,
                min_replicas=low,
                max_replicas=high,
            )
        )
        if budget is None and rows[-1].num_gpus:
            problems.append(f"{name}: num_gpus {rows[-1].num_gpus:g} with no memory budget in gpu_plan")
    return Plan(app.get("name", "default"), card, plan.cuda_context_gb if plan else 0.0, rows, problems)


def render(plan: Plan) -> str:
    card_gb = card_memory_gb(plan.card) if plan.card else 0.0
    where = f"on {plan.card} ({card_gb:g} GB; {plan.context_gb:g} GB CUDA context per replica)"
    width = max([14, *(len(r.name) + 2 for r in plan.rows)])  # LLM deployments are named by their models
    lines = [
        f"application {plan.app!r} {where if plan.card else '(no gpu_plan, no --gpu)'}",
        f"{'deployment':<{width}}{'num_gpus':>9}{'share GB':>10}{'budget GB':>11}{'+ctx GB':>9}"
        f"{'min':>5}{'max':>5}{'num_cpus':>10}",
    ]
    for r in plan.rows:
        gpu = r.num_gpus > 0
        lines.append(
            f"{r.name:<{width}}{r.num_gpus:>9.2f}{(f'{r.num_gpus * card_gb:.1f}' if gpu and card_gb else '-'):>10}"
            f"{(f'{r.budget_gb:.1f}' if r.budget_gb is not None else '-'):>11}"
            f"{(f'{r.budget_gb + plan.context_gb:.1f}' if r.budget_gb is not None else '-'):>9}"
            f"{r.min_replicas:>5}{r.max_replicas:>5}{r.num_cpus:>10g}"
        )
    for at in ("min", "max"):
        lines.append(
            f"at {at} scale: {plan.total('num_gpus', at):.2f} GPU in fractions -> "
            f"{plan.cards(at)} x {plan.card or 'GPU'} (first-fit decreasing), {plan.total('num_cpus', at):g} CPUs"
        )
    lines += [f"BROKEN {p}" for p in plan.problems] or ["plan holds: every budget + context fits its fraction"]
    return "\n".join(lines)


def plan_file(path: str | Path, card: str | None = None) -> tuple[str, bool]:
    """The table for every application in a Serve config file, and whether every plan holds."""
    document = yaml.safe_load(Path(path).read_text()) or {}
    tables, ok = [], True
    for app in document.get("applications", []):
        try:
            plan = plan_application(app, card)
        except ConfigError as exc:
            tables.append(f"application {app.get('name', 'default')!r}: {exc}")
            ok = False
            continue
        tables.append(render(plan))
        ok = ok and not plan.problems
    return "\n\n".join(tables), ok
