"""Data-parallel training over several processes (launched by torchrun): the one home of the
process group, the sharding of batches, the all-reduces and the rank-0-only rule.

A single process is ``World()`` (rank 0 of 1), where every operation here is a no-op, so the
one-GPU path reads as before. Under torchrun (``WORLD_SIZE`` > 1) each rank trains on its share
of every global batch; DistributedDataParallel averages the gradients; rank 0 alone writes the
run directory, emits events and listens for controls, and what it decided at each batch
boundary reaches every rank as an all-reduce over a host-side (gloo) group, so no rank reads
its GPU to agree. The group's handles live in the World that ``join`` returns, not in globals.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from engine.ranks.plan import launched


@dataclass(frozen=True)
class World:
    """This process's place among the ranks, and its handles on the group (none alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    host_group: Any = field(default=None, compare=False)
    """gloo: host-side agreement even when the tensors' group is NCCL."""
    watch: _Watch | None = field(default=None, compare=False)
    """Heartbeats and last words: which rank failed, and why."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch's indices (sizes differ by at most one)."""
        return index if self.size == 1 else index.tensor_split(self.size)[self.rank]

    def all_reduce_(self, *tensors: torch.Tensor) -> None:
        """Sum device tensors over the ranks, in place (evaluation counts: exact)."""
        if self.is_distributed:
            for t in tensors:
                dist.all_reduce(t)

    def host_sum(self, values: Sequence[float]) -> list[float]:
        """Sum host numbers over the ranks (epoch totals)."""
        if not self.is_distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, group=self.host_group)
        return [float(v) for v in t.tolist()]

    def agree(self, word: Sequence[int]) -> list[int]:
        """Rank 0's ``word`` on every rank (the controls decided at a batch boundary). A sum with
        the others' zeros rather than a broadcast: a broadcast's sender does not wait for the
        receivers, an all-reduce waits for every rank, so a silent rank is noticed here, on the
        host and within the timeout, even when the GPUs' work is queued behind it."""
        if not self.is_distributed:
            return list(word)
        t = torch.tensor(word if self.is_main else [0] * len(word), dtype=torch.int64)
        dist.all_reduce(t, group=self.host_group)
        return [int(v) for v in t.tolist()]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        if not self.is_distributed:
            return [value]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value, group=self.host_group)
        return out

    def share_buffers_(self, model: nn.Module) -> None:
        """Rank 0's BatchNorm statistics on every rank: each rank's last forward updated its own
        from its shard, and an evaluation (sharded) must be of the one model rank 0 saves.
        One broadcast per dtype (about 60 small tensors in a ResNet-18), not one per tensor."""
        if not self.is_distributed:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in model.buffers():
            by_dtype.setdefault(t.dtype, []).append(t)
        for tensors in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in tensors])
            dist.broadcast(flat, src=0)
            for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
                t.copy_(part.view_as(t))

    def last_words(self, kind: str, message: str) -> None:
        """A failing rank other than 0 leaves why, for rank 0 to put in the run's failure."""
        if self.watch is not None and not self.is_main:
            self.watch.last_words(self.rank, kind, message)

    def who_failed(self) -> tuple[str, str] | None:
        """On rank 0, after a collective failed: (kind, message) naming the rank that failed or
        went silent, or None when no rank can be named."""
        return self.watch.who_failed(self.size) if self.watch is not None else None

    def weights_agree(self, model: nn.Module) -> bool:
        """Whether every rank holds the same parameters (one checksum per rank, compared exactly)."""
        with torch.no_grad():
            sums = torch.stack([p.double().sum() + 1e-3 * p.double().abs().sum() for p in model.parameters()])
        gathered = self.gather(sums.tolist())  # one read of the device
        return all(g == gathered[0] for g in gathered)


class _Watch:
    """Each rank's heartbeat and last words in torchrun's key-value store (its own connection, so
    a rank blocked in a collective still beats, a killed or stopped one does not): when a
    collective fails, rank 0 can say which rank failed and why instead of "a peer went away"."""

    BEAT_S = 0.5

    def __init__(self, store: Any, rank: int) -> None:
        self.store = store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if rank != 0:
            self._thread = threading.Thread(target=self._beat, args=(rank,), name="cifar-tui-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self, rank: int) -> None:
        try:
            while not self._stop.is_set():
                self.store.add(f"beat/{rank}", 1)
                self._stop.wait(self.BEAT_S)
        except Exception:  # the store went away: the group is ending anyway
            return

    def close(self) -> None:
        """Stop beating before the process ends: a thread still inside the store's C++ client as
        the interpreter exits can abort the process ("terminate called without an active
        exception", SIGABRT), which torchrun takes for a failed rank."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def last_words(self, rank: int, kind: str, message: str) -> None:
        try:
            self.store.set(f"failed/{rank}", f"{kind}\n{message}")
        except Exception:  # best effort: the launcher still says which rank ended first
            pass

    def who_failed(self, size: int) -> tuple[str, str] | None:
        try:
            said = self._said(size)
            if said is not None:
                return said
            before = [self.store.add(f"beat/{r}", 0) for r in range(1, size)]
            time.sleep(4 * self.BEAT_S)
            said = self._said(size)  # a rank may have written while dying
            if said is not None:
                return said
            silent = [r for r, b in zip(range(1, size), before) if self.store.add(f"beat/{r}", 0) == b]
        except Exception:
            return None
        if not silent:
            return None
        names = ", ".join(str(r) for r in silent)
        return "rank_lost", f"rank {names} stopped answering (killed, hung or its machine gone)"

    def _said(self, size: int) -> tuple[str, str] | None:
        for r in range(1, size):
            if self.store.check([f"failed/{r}"]):
                kind, _, message = self.store.get(f"failed/{r}").decode(errors="replace").partition("\n")
                return kind, f"rank {r} failed: {message}"
        return None


def join(device_type: str, timeout_s: float) -> World:
    """Join the process group torchrun prepared (NCCL for CUDA, gloo elsewhere); World() alone.
    A collective that waits ``timeout_s`` on a rank that stopped answering raises instead of hanging."""
    if not launched():
        return World()
    timeout = datetime.timedelta(seconds=timeout_s)
    backend = "nccl" if device_type == "cuda" else "gloo"
    # NCCL's watchdog ends a process whose collective times out, before it can say why: give it
    # a minute more than the host group, whose timeout raises where the run records the failure.
    group_timeout = timeout + datetime.timedelta(seconds=60) if backend == "nccl" else timeout
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if not dist.is_initialized():
        if restart == 0:
            dist.init_process_group(backend, timeout=group_timeout)
        else:
            # After a restart (--max-restarts) torchrun's store still holds the last round's keys,
            # among them the dead ranks' addresses: a round of its own keeps them apart.
            dist.init_process_group(backend, store=_launcher_store(f"cifar-tui/restart-{restart}", timeout),
                                    rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                                    timeout=group_timeout)  # fmt: skip
    host_group = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else dist.group.WORLD
    rank = dist.get_rank()
    watch = _Watch(_launcher_store(f"cifar-tui/watch-{restart}", timeout), rank)
    return World(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), host_group, watch)


def _launcher_store(prefix: str, timeout: datetime.timedelta) -> Any:
    """A connection of this process's own to torchrun's key-value store, under ``prefix``."""
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout)
    return dist.PrefixStore(prefix, store)


def lost_a_rank(exc: BaseException) -> bool:
    """A collective that failed because a peer went away (killed, crashed) or timed out."""
    backend_error = getattr(dist, "DistBackendError", ())
    text = str(exc)
    return isinstance(exc, backend_error) or (
        isinstance(exc, RuntimeError)
        and any(k in text for k in ("gloo", "NCCL", "Connection reset", "Connection closed", "timed out"))
    )


def leave(world: World) -> None:
    if world.watch is not None:
        world.watch.close()
    if world.is_distributed and dist.is_initialized():
        dist.destroy_process_group()
