"""Steering applied: the trainer's side of engine/run/steering.py. At a batch boundary an act
changes the LR multiplier, the run's length (re-planning the schedule from the current step)
or its stop rules; each act becomes a Steered event and is kept in the run's steer state (so a
checkpoint carries it and a resumed run goes on exactly as the steered one would have)."""

from __future__ import annotations

import torch

from engine.run import events as ev
from engine.run import steering as st
from engine.run import wire
from engine.run.config import TrainConfig
from engine.train.schedule import LrSchedule
from engine.train.state import TrainState


class Steering:
    """The run's steerable plan; ``schedule`` is what the LR scheduler reads every step."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int, state: st.SteerState) -> None:
        self.load(cfg, steps_per_epoch, state)

    def load(self, cfg: TrainConfig, steps_per_epoch: int, state: st.SteerState) -> None:
        """Take up ``state`` (a resumed checkpoint's): the schedule as it was planned and re-planned."""
        self.state = state
        state.first_epochs = state.first_epochs or cfg.epochs
        self.schedule = LrSchedule(cfg, steps_per_epoch, state.first_epochs, state.replans, state.lr_scale)

    def lr_lambda(self, step: int) -> float:
        """The LR factor LambdaLR multiplies its base LR by (a plain function: LambdaLR keeps no
        state of it in its state dict; the steer state is saved apart)."""
        return self.schedule(step)

    def act(self, act: st.SteerAct, cfg: TrainConfig, where: TrainState,
            scheduler: torch.optim.lr_scheduler.LambdaLR) -> tuple[TrainConfig, ev.Steered]:  # fmt: skip
        """Apply ``act`` at this boundary: the config it leaves (length and stop rules live in the
        config, which every checkpoint holds) and the event that says what happened."""
        old, refused = self.current(act.what, cfg), ""
        new = (act.value, act.extra if act.what == st.EARLY_STOP else 0.0)  # what was asked, as a number
        if act.what == st.LR_SCALE:
            scale = act.value * (self.schedule.scale if act.extra else 1.0)
            new = (scale, 0.0)
            low, high = st.LR_SCALE_RANGE
            if not low <= scale <= high:
                refused = f"x{scale:g} is outside {low:g}..{high:g}"
            else:
                self.schedule.scale = self.state.lr_scale = scale
                set_lr_now(scheduler)
        elif act.what == st.EPOCHS:
            epochs = int(act.value) + (cfg.epochs if act.extra else 0)
            new = (float(epochs), 0.0)
            under_way = where.epoch + 1
            if epochs < under_way:
                refused = f"cannot end before epoch {under_way}, which is under way"
            elif epochs > st.MAX_EPOCHS:
                refused = f"at most {st.MAX_EPOCHS:,} epochs"
            elif epochs != cfg.epochs:
                self.schedule.replan(where.global_step, epochs)
                self.state.replans.append([where.global_step, epochs])
                set_lr_now(scheduler)
                cfg = cfg.with_overrides(epochs=epochs)
        elif act.what == st.EARLY_STOP:
            rule = st.EarlyStop(int(act.value), act.extra) if act.value else None
            cfg = cfg.with_overrides(early_stop=str(rule) if rule else "")
        else:
            cfg = cfg.with_overrides(target_accuracy=act.value)
        if not refused:
            new = self.current(act.what, cfg)
        event = ev.Steered(where.global_step, where.epoch + 1, act.what, old[0], new[0], act.source, refused,
                           old_extra=old[1], new_extra=new[1], request=act.request)  # fmt: skip
        if not refused:
            self.state.acts.append(wire.to_dict(event))
        return cfg, event

    def resumed_with(self, cfg: TrainConfig, where: TrainState,
                     scheduler: torch.optim.lr_scheduler.LambdaLR) -> tuple[TrainConfig, ev.Steered | None]:  # fmt: skip
        """A resume whose ``--epochs`` differs from the length the checkpoint planned re-plans the
        rest of the schedule as a steering act would (fewer epochs than the checkpoint has done
        were refused before: check_resumable); the config and the act's event (None: no change)."""
        planned = self.schedule.epochs
        if cfg.epochs == planned:
            return cfg, None
        act = st.SteerAct(st.EPOCHS, float(cfg.epochs), source=st.RESUME)
        return self.act(act, cfg.with_overrides(epochs=planned), where, scheduler)

    def current(self, what: str, cfg: TrainConfig) -> tuple[float, float]:
        """The steered value now, as a Steered event carries it: (value, extra)."""
        if what == st.LR_SCALE:
            return self.schedule.scale, 0.0
        if what == st.EPOCHS:
            return float(cfg.epochs), 0.0
        if what == st.EARLY_STOP:
            rule = st.parse_early_stop_rule(cfg.early_stop)
            return (float(rule.patience), rule.min_delta) if rule else (0.0, 0.0)
        return cfg.target_accuracy, 0.0

    def stop_rule(self, cfg: TrainConfig, accuracy: float, epoch: int) -> str:
        """After an epoch's evaluation: the cause a stop rule gives for ending the run now, or ""."""
        self.state.accuracies.append(accuracy)
        return st.target_cause(accuracy, cfg.target_accuracy, epoch) or st.early_stop_cause(
            self.state.accuracies, st.parse_early_stop_rule(cfg.early_stop)
        )


def set_lr_now(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Give the optimizer the schedule's LR for the current step at once (the next batch uses it,
    not only the one after the next scheduler step)."""
    step = scheduler.last_epoch
    lrs = [base * lmbda(step) for base, lmbda in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() answers
