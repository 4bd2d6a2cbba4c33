"""`nasflow show NAME --plot`: Pareto front, hypervolume and trajectory PNGs of a stored study."""

from __future__ import annotations

import matplotlib.image

import nasflow as nf
from nasflow.cli.main import main
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import synthetic_score


def score(arch: nf.Architecture) -> dict[str, float]:
    return {"accuracy": synthetic_score(arch), "params": float(arch["depth"] * arch["width"])}


def stored_study(url: str, name: str, objectives: list[str]) -> None:
    study = nf.create_study(
        space=constrained_space(),
        strategy="random",
        evaluator=nf.FunctionEvaluator(score),
        objectives=objectives,
        storage=url,
        name=name,
        seed=0,
    )
    study.optimize(budget=15)


def test_two_objectives_give_front_hypervolume_and_trajectory(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    stored_study(url, "mo", ["accuracy:max", "params:min"])
    code = main(["show", "mo", "--storage", url, "--plot", "--plot-dir", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 0
    names = ["trajectory", "pareto", "hypervolume"]
    assert err.splitlines() == [f"plot written to {(tmp_path / 'p' / n).resolve()}.png" for n in names]
    for n in names:
        image = matplotlib.image.imread(tmp_path / "p" / f"{n}.png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_one_objective_has_no_front_and_the_default_folder_is_plots(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    stored_study(url, "single", ["accuracy:max"])
    assert main(["show", "single", "--storage", url, "--plot"]) == 0
    assert sorted(p.name for p in (tmp_path / "plots" / "single").glob("*.png")) == ["trajectory.png"]
