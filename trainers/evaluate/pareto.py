"""Which rows of the evaluate table are worth deploying: the accuracy / end-to-end latency Pareto
front and a one-line verdict.

The cost axis is end-to-end latency at batch 1 (parse or tokenise plus model, what a deployment
pays per request), not model-only latency: a graph student's model is fast, its spaCy parse is not.
A row is on the front when no other row is at least as good on the headline metric and at least as
fast, and strictly better on one of the two.
"""
from __future__ import annotations

COST = "e2e_latency_ms_b1"


def _points(rows: list[dict], headline: str) -> list[dict]:
    return [r for r in rows if r.get(COST) and r.get(headline) is not None]


def pareto_front(rows: list[dict], headline: str = "accuracy") -> list[str]:
    """Names of the rows no other row dominates, fastest first."""
    pts = _points(rows, headline)

    def dominated(r: dict) -> bool:
        return any(o[headline] >= r[headline] and o[COST] <= r[COST]
                   and (o[headline] > r[headline] or o[COST] < r[COST]) for o in pts)

    return [r["model"] for r in sorted(pts, key=lambda r: r[COST]) if not dominated(r)]


def verdict(rows: list[dict], headline: str = "accuracy") -> str:
    """One line naming the row to deploy for accuracy, the most accurate small model (any row but the
    teacher) and the row to deploy for latency (the fastest on the front)."""
    pts = {r["model"]: r for r in _points(rows, headline)}
    front = pareto_front(rows, headline)
    if not front:
        return "Verdict: no row was timed end to end."

    def say(name: str) -> str:
        r = pts[name]
        return f"{name} ({headline} {r[headline]:.4f}, {r[COST]:.2f} ms)"

    best = max(front, key=lambda n: pts[n][headline])
    small = [n for n in front if n != "teacher"]
    best_small = max(small, key=lambda n: pts[n][headline]) if small else None
    parts = [f"for {headline}: {say(best)}"]
    if best_small and best_small != best:
        parts.append(f"the most accurate small model: {say(best_small)}")
    parts.append(f"for latency: {say(front[0])}")
    return (f"Verdict (end-to-end latency at batch 1; Pareto front: {', '.join(front)}): deploy "
            + "; ".join(parts) + ".")
