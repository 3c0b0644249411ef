"""Validation curve, best-on-validation weights, time to target, and the optimiser / schedule names."""

import json
import math

import pytest
import torch
from ignite.engine import Engine, Events

from common.handlers.convergence import BestValidationWeights, ValidationCurve, time_to_target
from common.optim import cosine_warmup_factor, make_lr_scheduler, make_optimizer


def _trainer_and_validator(scores, network=None, every=1):
    """A trainer whose epoch e (1-based) sets the network's weight to e, validated every ``every`` epochs with
    ``scores[k]`` as the k-th validation's ``val_dice``."""
    network = network or torch.nn.Linear(1, 1, bias=False)
    validations = iter(scores)

    def validate(engine, batch):
        return None

    validator = Engine(validate)

    @validator.on(Events.EPOCH_COMPLETED)
    def put_score(engine):
        engine.state.metrics["val_dice"] = next(validations)
        engine.state.metrics["text"] = "not a number"

    def step(engine, batch):
        with torch.no_grad():
            network.weight.fill_(float(engine.state.epoch))
        return 0.0

    trainer = Engine(step)

    @trainer.on(Events.EPOCH_COMPLETED(every=every))
    def run_validation(engine):
        validator.run([0], max_epochs=1)

    return trainer, validator, network


def test_best_weights_are_the_best_validations_not_the_last():
    trainer, validator, net = _trainer_and_validator([0.2, 0.9, 0.5, 0.7])
    best = BestValidationWeights(net, validator, "val_dice")
    best.attach(trainer)
    trainer.run([0], max_epochs=4)
    assert best.best_value == pytest.approx(0.9) and best.best_epoch == 2
    assert net.weight.item() == 2.0  # epoch 2's weights, restored at COMPLETED (the last epoch set 4)


def test_best_weights_min_mode_and_disabled():
    trainer, validator, net = _trainer_and_validator([0.2, 0.9, 0.1, 0.7])
    best = BestValidationWeights(net, validator, "val_dice", mode="min")
    best.attach(trainer)
    trainer.run([0], max_epochs=4)
    assert best.best_epoch == 3 and net.weight.item() == 3.0
    trainer, validator, net = _trainer_and_validator([0.2, 0.9, 0.1, 0.7])
    BestValidationWeights(net, validator, "val_dice", enabled=False).attach(trainer)
    trainer.run([0], max_epochs=4)
    assert net.weight.item() == 4.0  # last weights kept
    with pytest.raises(ValueError, match="mode"):
        BestValidationWeights(net, validator, "val_dice", mode="best")


def test_best_weights_ignore_nan_and_round_trip_their_state():
    trainer, validator, net = _trainer_and_validator([math.nan, 0.4, math.nan])
    best = BestValidationWeights(net, validator, "val_dice")
    best.attach(trainer)
    trainer.run([0], max_epochs=3)
    assert best.best_epoch == 2 and net.weight.item() == 2.0
    state = best.state_dict()
    other = BestValidationWeights(torch.nn.Linear(1, 1, bias=False), validator, "val_dice")
    other.load_state_dict(state)
    assert other.best_value == pytest.approx(0.4) and other.best_epoch == 2
    assert other.best_state["weight"].item() == 2.0
    empty = BestValidationWeights(net, validator, "val_dice")
    empty.load_state_dict(empty.state_dict())
    assert empty.best_value is None and empty.best_epoch is None and empty.best_state is None


def test_validation_curve_records_every_validation_with_growing_clocks(tmp_path):
    trainer, validator, _ = _trainer_and_validator([0.1, 0.5, 0.3], every=2)
    out = tmp_path / "curve.json"
    curve = ValidationCurve(validator, out, metric="val_dice")
    curve.attach(trainer)
    trainer.run([0, 1], max_epochs=6)
    written = json.loads(out.read_text())
    assert written["metric"] == "val_dice"
    points = written["points"]
    assert [p["epoch"] for p in points] == [2, 4, 6]
    assert [p["iteration"] for p in points] == [4, 8, 12]
    assert [p["metrics"] for p in points] == [{"val_dice": 0.1}, {"val_dice": 0.5}, {"val_dice": 0.3}]
    cpu = [p["cpu_seconds"] for p in points]
    assert cpu == sorted(cpu) and all(c >= 0 for c in cpu)
    restored = ValidationCurve(validator)
    restored.load_state_dict(curve.state_dict())
    assert restored.points == points


def test_time_to_target_is_the_first_crossing():
    points = [
        {"cpu_seconds": 10.0, "wall_seconds": 11.0, "metrics": {"d": 0.5}},
        {"cpu_seconds": 20.0, "wall_seconds": 25.0, "metrics": {"d": math.nan}},
        {"cpu_seconds": 30.0, "wall_seconds": 31.0, "metrics": {"d": 0.8}},
        {"cpu_seconds": 40.0, "wall_seconds": 45.0, "metrics": {"d": 0.7}},
        {"cpu_seconds": 50.0, "wall_seconds": 55.0, "metrics": {"d": 0.9}},
    ]
    assert time_to_target(points, "d", 0.75) == 30.0
    assert time_to_target(points, "d", 0.75, clock="wall_seconds") == 31.0
    assert time_to_target(points, "d", 0.85) == 50.0
    assert time_to_target(points, "d", 0.95) is None
    assert time_to_target(points, "d", 0.6, mode="min") == 10.0
    assert time_to_target(points, "missing", 0.1) is None


def test_optimizers_by_name():
    params = [torch.nn.Parameter(torch.ones(2))]
    adam = make_optimizer(params, "adam", lr=0.01, weight_decay=0.1)
    adamw = make_optimizer(params, "adamw", lr=0.02, weight_decay=0.1)
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["lr"] == 0.01
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.1
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        make_optimizer(params, "sgd")


def test_cosine_warmup_factor_by_hand():
    # 10 steps, 2 of warm-up: 0.5, 1.0, then cosine from 1 down to final over steps 2..9
    assert cosine_warmup_factor(0, 10, 2) == pytest.approx(0.5)
    assert cosine_warmup_factor(1, 10, 2) == pytest.approx(1.0)
    assert cosine_warmup_factor(2, 10, 2, final_fraction=0.0) == pytest.approx(1.0)
    # step 2 + 3.5 is the middle of the 7-step span: cos(pi / 2) = 0 -> half way between 1 and final
    assert cosine_warmup_factor(5.5, 10, 2, final_fraction=0.1) == pytest.approx(0.55)
    assert cosine_warmup_factor(9, 10, 2, final_fraction=0.1) == pytest.approx(0.1)
    assert cosine_warmup_factor(20, 10, 2, final_fraction=0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
def test_schedules_peak_at_the_learning_rate_and_step_per_iteration(schedule):
    param = torch.nn.Parameter(torch.ones(1))
    opt = make_optimizer([param], "adamw", lr=0.01)
    sched = make_lr_scheduler(opt, schedule, epochs=5, steps_per_epoch=4, warmup_fraction=0.25)
    rates = []
    for _ in range(20):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(rates) == pytest.approx(0.01, rel=1e-6)
    if schedule == "constant":
        assert rates == [0.01] * 20
    else:
        peak = rates.index(max(rates))
        assert 3 <= peak <= 5  # end of the 25% warm-up (5 of 20 steps)
        assert rates[:peak] == sorted(rates[:peak]) and rates[peak:] == sorted(rates[peak:], reverse=True)
        assert rates[-1] < 0.05 * 0.01 * 2
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        make_lr_scheduler(opt, "step")


def test_best_weights_are_back_before_a_final_checkpoint_saver_runs():
    """A saver attached BEFORE the handler (as in the bundle's handler list) still writes the best weights."""
    trainer, validator, net = _trainer_and_validator([0.9, 0.2, 0.5])
    saved = {}

    @trainer.on(Events.COMPLETED)
    def final_save(engine):
        saved["weight"] = net.weight.item()

    BestValidationWeights(net, validator, "val_dice").attach(trainer)
    trainer.run([0], max_epochs=3)
    assert saved["weight"] == 1.0  # epoch 1 was best, not the last epoch's 3.0
