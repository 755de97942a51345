"""The comparison report as a rich table (the CLI's default output).

A shadow test (``mode: shadow``) is shown as champion vs shadow, with the agreement rows."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from consumers.monitor.report import (
    VERDICT_BETTER,
    VERDICT_SHADOW_BETTER,
    VERDICT_SHADOW_WORSE,
    VERDICT_WORSE,
    Comparison,
    ComparisonReport,
    ShadowAgreement,
    VariantStats,
)
from model_registry.render import console as default_console

__all__ = ["print_report", "report_renderable"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def _num(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _diff(c: Comparison | None) -> str:
    """The sequential interval (valid at every look), then the fixed-horizon one."""
    if c is None:
        return "-"
    d = c.sequential or c.difference
    if d is None:
        return "-"
    pct = c.metric in {"error rate", "accuracy"}
    scale, unit = (100, " pp") if pct else (1, "")
    mark = {"better": " (better)", "worse": " (worse)"}.get(c.finding or "", "")
    text = f"{d.estimate * scale:+.2f}{unit} [{d.low * scale:+.2f}, {d.high * scale:+.2f}]{mark}"
    fh = c.fixed_horizon
    if fh is not None and c.sequential is not None:
        text += f" (fixed-horizon [{fh.low * scale:+.2f}, {fh.high * scale:+.2f}])"
    return text


def _head(r: ComparisonReport) -> Text:
    state = "running" if r.running else f"stopped {r.stopped_at}"
    kind = r.model_type or "type unknown"
    if r.mode == "shadow":
        return Text.assemble(
            (f"Shadow test {r.test_id}", "bold"),
            f"  champion {r.champion_model_id} vs shadow {r.challenger_model_id}  ({kind}, "
            f"{state}, split v{r.split_version}: {r.configured_challenger_pct:g}% of the "
            "champion's requests mirrored to the shadow; mode: shadow)",
        )
    return Text.assemble(
        (f"A/B test {r.test_id}", "bold"),
        f"  champion {r.champion_model_id} vs challenger {r.challenger_model_id}  ({kind}, "
        f"{state}, split v{r.split_version}: {r.configured_challenger_pct:g}% to the challenger)",
    )


def _agreement_rows(g: ShadowAgreement) -> list[tuple[str, str, str, str]]:
    rate = "-" if g.agreement_rate is None else f"{g.agreement_rate * 100:.2f}%"
    return [
        (
            "agreement rate (shadow = champion)",
            "",
            rate,
            f"{g.agreements} of {g.compared} compared ({g.pairs} paired, {g.unpaired} unpaired)",
        ),
        (
            "mean abs difference",
            "",
            _num(g.mean_abs_difference, 4),
            f"over {g.numeric_n} values (agree within rel {g.rel_tol:g})" if g.numeric_n else "",
        ),
    ]


def report_renderable(r: ComparisonReport) -> Group:
    """Header, side-by-side table, SRM line and verdict."""
    arm = r.arm
    shadow = r.mode == "shadow"
    table = Table(show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("champion", justify="right")
    table.add_column(arm, justify="right")
    table.add_column(f"{arm} - champion [sequential 95% CS]", justify="right")
    a, b = r.champion, r.challenger
    share = (
        f"expected {_pct(r.expected_challenger_share)} mirrored (best-effort)"
        if shadow
        else f"expected {_pct(r.expected_challenger_share)} to the challenger"
    )
    rows: list[tuple[str, Callable[[VariantStats], str], str]] = [
        ("requests (shadow: mirrored)" if shadow else "requests", lambda v: str(v.requests), ""),
        (
            "share of the champion's requests" if shadow else "traffic share",
            lambda v: _pct(v.share),
            share,
        ),
        ("errors", lambda v: str(v.errors), ""),
        ("error rate", lambda v: _pct(v.error_rate), _diff(r.error_rate)),
        ("fallbacks (counted as errors)", lambda v: str(v.fallbacks), ""),
        ("fallback outcomes (not scored)", lambda v: str(v.fallback_outcomes), ""),
        ("cache hits", lambda v: str(v.cache_hits), ""),
        ("mean latency ms (own answers)", lambda v: _num(v.mean_latency_ms, 2), _diff(r.latency)),
        ("latency p50 ms", lambda v: _num(v.latency_ms.get("p50"), 2), ""),
        ("latency p95 ms", lambda v: _num(v.latency_ms.get("p95"), 2), ""),
        ("latency p99 ms", lambda v: _num(v.latency_ms.get("p99"), 2), ""),
        ("latency p99 ms, all requests", lambda v: _num(v.latency_all_ms.get("p99"), 2), ""),
        ("scored outcomes", lambda v: str(v.scored), ""),
    ]
    if r.quality is not None and r.quality.metric == "MAE":
        rows += [
            ("MAE", lambda v: _num(v.mae, 4), _diff(r.quality)),
            ("MSE", lambda v: _num(v.mse, 4), ""),
        ]
    else:
        rows += [
            ("accuracy", lambda v: _pct(v.accuracy), _diff(r.quality)),
            ("precision", lambda v: _pct(v.precision), ""),
            ("recall", lambda v: _pct(v.recall), ""),
        ]
    for name, get, diff in rows:
        table.add_row(name, get(a), get(b), diff)
    if r.agreement is not None:
        for row in _agreement_rows(r.agreement):
            table.add_row(*row)
    if shadow:
        srm = Text("SRM check: none in a shadow test (mirrored copies are best-effort)")
    elif r.srm is None:
        srm = Text("SRM check: not enough traffic yet")
    else:
        style = "bold red" if r.srm.alert else "green"
        flag = "ALERT (p < 0.001)" if r.srm.alert else "ok"
        srm = Text(
            f"SRM check: chi-square {r.srm.chi2:.2f}, {r.srm.dof} dof, p = {r.srm.p_value:.3g}: "
            f"{flag}",
            style=style,
        )
    colour = {
        VERDICT_BETTER: "bold green",
        VERDICT_SHADOW_BETTER: "bold green",
        VERDICT_WORSE: "bold red",
        VERDICT_SHADOW_WORSE: "bold red",
    }.get(r.verdict, "bold yellow")
    verdict = Text.assemble(("Verdict: ", "bold"), (r.verdict, colour))
    reasons = [Text(f"  - {reason}") for reason in r.reasons]
    return Group(_head(r), table, srm, verdict, *reasons)


def print_report(r: ComparisonReport, console: Console | None = None) -> None:
    """Print the report to the terminal (whole values when piped)."""
    (console or default_console()).print(report_renderable(r))
