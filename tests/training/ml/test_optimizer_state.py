"""AdamW's state saved with a checkpoint and resumed (training.ml.optimizer_state), on plain
torch modules: a state that fits continues (moments and step count), the new optimiser's
hyperparameters stay its own, and a state that does not fit or cannot be read starts fresh."""

import torch

from training.ml.optimizer_state import (
    OPTIMIZER_FILE,
    OPTIMIZER_META,
    optimizer_state_load,
    optimizer_state_save,
    optimizer_steps,
)


def model_and_optimizer(out_features: int = 3, lr: float = 0.1, seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, out_features), torch.nn.Linear(out_features, 1))
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias")]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    return model, optimizer


def train(model, optimizer, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.ones(2, 4)).pow(2).sum().backward()
        optimizer.step()


def test_a_state_that_fits_resumes_its_moments_and_step_count(tmp_path):
    model, optimizer = model_and_optimizer()
    train(model, optimizer, 3)
    optimizer_state_save(optimizer, model, tmp_path)
    assert (tmp_path / OPTIMIZER_FILE).is_file() and (tmp_path / OPTIMIZER_META).is_file()
    saved_moment = optimizer.state[model[0].weight]["exp_avg"].clone()

    again, fresh = model_and_optimizer(lr=0.5)
    again.load_state_dict(model.state_dict())
    outcome = optimizer_state_load(fresh, again, tmp_path)
    assert (outcome.state, outcome.reason) == ("resumed", "")
    assert optimizer_steps(fresh) == 3
    assert torch.equal(fresh.state[again[0].weight]["exp_avg"], saved_moment)
    assert [g["lr"] for g in fresh.param_groups] == [0.5, 0.5]  # the new update's own hyperparameters
    assert [g["weight_decay"] for g in fresh.param_groups] == [0.01, 0.0]
    train(again, fresh, 2)
    assert optimizer_steps(fresh) == 5


def test_a_state_that_does_not_fit_starts_fresh(tmp_path):
    model, optimizer = model_and_optimizer(out_features=3)
    train(model, optimizer, 2)
    optimizer_state_save(optimizer, model, tmp_path)

    wider, optimizer_wider = model_and_optimizer(out_features=5)
    outcome = optimizer_state_load(optimizer_wider, wider, tmp_path)
    assert (
        outcome.state == "fresh" and "exp_avg of parameter 0 has shape (3, 4), not (5, 4)" in outcome.reason
    )
    assert optimizer_steps(optimizer_wider) == 0 and not optimizer_wider.state

    other, optimizer_other = model_and_optimizer()
    renamed = torch.nn.Sequential(torch.nn.Identity(), *other)  # same shapes, other names
    outcome = optimizer_state_load(optimizer_other, renamed, tmp_path)
    assert outcome.state == "fresh" and "names differ" in outcome.reason
    assert not optimizer_other.state


def test_a_missing_or_unreadable_state_starts_fresh(tmp_path):
    model, optimizer = model_and_optimizer()
    outcome = optimizer_state_load(optimizer, model, tmp_path)
    assert outcome.state == "fresh" and "no saved optimiser state" in outcome.reason

    train(model, optimizer, 1)
    optimizer_state_save(optimizer, model, tmp_path)
    (tmp_path / OPTIMIZER_FILE).write_bytes(b"not a torch file")
    again, fresh = model_and_optimizer()
    outcome = optimizer_state_load(fresh, again, tmp_path)
    assert outcome.state == "fresh" and "could not be read" in outcome.reason
    assert not fresh.state
