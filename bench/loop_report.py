"""Is bench/loop.py's win rate more than length? The same samples, judged three more ways.

bench/loop.py's oracle and the project's reward model are the same kind of model on the same
kind of data, and in its first runs the truncated share fell as the wins rose. This report
reads the evaluation samples (bench/loop.py's `--dump` file, or its results in the same run)
and, for every checkpoint against the base's sample of the same prompt and seed, gives:

- the oracle's win rate, and its length-controlled win rate (training.ml.stats
  .length_controlled_win_rate: a logistic fit of the outcome on the length difference in
  tokens, read at equal lengths, as length-controlled AlpacaEval does; Dubois et al. 2024),
  with the fitted slope;
- the oracle's win rate on the pairs where both responses ended on their own (neither hit the
  token limit), so truncation cannot decide it;
- the win rate by a judge of another family (bench.lexical_judge: a bag-of-words Bradley–Terry
  model trained on the same judge pairs), raw and length-controlled.

Every rate comes with its 95 % bootstrap interval over prompts.

    .venv/bin/python -m bench.loop_report var/bench/loop-<time>.json

Last line: `bench loop_report: lc_r<k>=... lc_low_r<k>=... complete_r<k>=... lexical_r<k>=...
lexical_lc_r<k>=... lexical_heldout=...` for the last round k.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import duel, print_table  # noqa: E402


def _outcomes(ours: list[float], base: list[float]) -> list[float]:
    return [duel(a, b) for a, b in zip(ours, base, strict=True)]


def _cell(est) -> str:
    return f"{est.value:.3f} [{est.low:.3f}, {est.high:.3f}]" if est.n else "—"


def judged(
    results: dict, judge_lines: list[str], *, resamples: int = 2000
) -> tuple[list[list], dict, object]:
    """Rows of the report (one per checkpoint but the base), the last-line figures, the judge."""
    from bench.lexical_judge import lexical_judge_train
    from training.ml.stats import length_controlled_win_rate, win_rate_interval

    lexical = lexical_judge_train(judge_lines)
    base = results["base"]
    base_lex = lexical.score(base["text"])
    rows, figures = [], {}
    for name, res in results.items():
        if name == "base":
            continue
        groups = res["prompt"]
        diffs = [a - b for a, b in zip(res["tokens"], base["tokens"], strict=True)]
        oracle = _outcomes(res["oracle"], base["oracle"])
        lex = _outcomes(lexical.score(res["text"]), base_lex)
        ended = [
            i
            for i, (a, b) in enumerate(zip(res["truncated"], base["truncated"], strict=True))
            if not a and not b
        ]
        raw = win_rate_interval(oracle, groups, resamples=resamples)
        lc = length_controlled_win_rate(oracle, diffs, groups, resamples=resamples)
        complete = win_rate_interval(
            [oracle[i] for i in ended], [groups[i] for i in ended], resamples=resamples
        )
        lex_raw = win_rate_interval(lex, groups, resamples=resamples)
        lex_lc = length_controlled_win_rate(lex, diffs, groups, resamples=resamples)
        rows.append([
            name,
            f"{sum(res['tokens']) / len(res['tokens']):.0f}",
            _cell(raw),
            _cell(lc.estimate),
            f"{lc.slope:+.2f}",
            f"{_cell(complete)} n={complete.n}",
            _cell(lex_raw),
            _cell(lex_lc.estimate),
        ])  # fmt: skip
        figures[name] = {
            "lc": lc.estimate,
            "complete": complete,
            "lexical": lex_raw,
            "lexical_lc": lex_lc.estimate,
        }
    return rows, figures, lexical


def report(results: dict, judge_lines: list[str], *, resamples: int = 2000) -> str:
    """Print the table and return the last line."""
    from training.ml.stats import wilson_interval

    rows, figures, lexical = judged(results, judge_lines, resamples=resamples)
    base = results["base"]
    acc = wilson_interval(lexical.heldout_accuracy * lexical.heldout_pairs, lexical.heldout_pairs)
    print(
        f"lexical judge: held-out pair accuracy {acc.value:.3f} [{acc.low:.3f}, {acc.high:.3f}] "
        f"on {lexical.heldout_pairs} pairs "
        f"(trained on {lexical.train_pairs}); base mean tokens {sum(base['tokens']) / len(base['tokens']):.0f}"
    )
    print_table(
        [
            "policy",
            "mean tokens",
            "oracle win rate",
            "oracle, length-controlled",
            "slope (log-odds / sd of Δtokens)",
            "oracle, both ended",
            "lexical judge",
            "lexical, length-controlled",
        ],
        rows,
    )
    rounds = sorted((k for k in figures if k.startswith("r")), key=lambda k: int(k[1:]))
    last = rounds[-1] if rounds else next(iter(figures))
    f = figures[last]
    return (
        f"bench loop_report: lc_{last}={f['lc'].value:.3f} lc_low_{last}={f['lc'].low:.3f}"
        f" complete_{last}={f['complete'].value:.3f} lexical_{last}={f['lexical'].value:.3f}"
        f" lexical_lc_{last}={f['lexical_lc'].value:.3f} lexical_heldout={lexical.heldout_accuracy:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dump", help="bench/loop.py's --dump file")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)
    data = json.loads(Path(args.dump).read_text())
    print(report(data["results"], data["judge_lines"], resamples=args.resamples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
