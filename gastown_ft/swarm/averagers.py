"""hivemind's optimizer with averagers that serve only the run's members (see `auth.MemberGate`).

The stock `GradientAverager` and `TrainingStateAverager` answer any peer that knows their address
and the run id. The subclasses here wrap their RPC handlers with the gate, and keep the stock
protocol names, so they interoperate with each other exactly like the originals.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from hivemind.optim import Optimizer
from hivemind.optim.grad_averager import GradientAverager
from hivemind.optim.state_averager import TrainingStateAverager

from gastown_ft.swarm.auth import MemberGate
from gastown_ft.swarm.keys import SwarmKey


class _GatedServicer:
    """Stands in for an averager as the p2p servicer: each rpc_* first asks the gate about the caller.
    A refused caller gets an empty answer stream, which hivemind peers read as "not available"."""

    def __init__(self, averager: Any, gate: MemberGate) -> None:
        self._averager, self._gate = averager, gate

    def __getattr__(self, name: str):
        method = getattr(self._averager, name)
        if not name.startswith("rpc_"):
            return method
        gate = self._gate

        async def gated(request, context):
            if not await gate.admits(str(context.remote_id)):
                return
            async for message in method(request, context):
                yield message

        return gated


class _GateMixin:
    _stock: type  # the hivemind class whose protocol names this one speaks

    def _init_gate(self, swarm_key: SwarmKey, run_id: str) -> None:
        # Set before the averager's __init__ starts its process, which carries them along.
        self._swarm_key, self._swarm_run_id = swarm_key, run_id

    async def add_p2p_handlers(self, p2p, wrapper=None, *, namespace=None, balanced=False) -> None:
        gate = MemberGate(self.dht, self._swarm_key, self._swarm_run_id)
        await super().add_p2p_handlers(
            p2p, _GatedServicer(self, gate), namespace=namespace, balanced=balanced
        )

    @classmethod
    def _get_handle_name(cls, namespace, method_name: str) -> str:
        return cls._stock._get_handle_name(namespace, method_name)


class GatedGradientAverager(_GateMixin, GradientAverager):
    _stock = GradientAverager

    def __init__(self, *args, swarm_key: SwarmKey, run_id: str, **kwargs) -> None:
        self._init_gate(swarm_key, run_id)
        super().__init__(*args, **kwargs)


class GatedStateAverager(_GateMixin, TrainingStateAverager):
    _stock = TrainingStateAverager

    def __init__(self, *, swarm_key: SwarmKey, run_id: str, **kwargs) -> None:
        self._init_gate(swarm_key, run_id)
        super().__init__(**kwargs)


class SwarmOptimizer(Optimizer):
    """`hivemind.Optimizer` whose gradient and state averagers are gated by the swarm key."""

    def __init__(self, *, swarm_key: SwarmKey, run_id: str, **kwargs) -> None:
        self._swarm_key = swarm_key
        # Peers in each gradient averaging round this peer finished (1: it stepped on its own gradients,
        # no group formed or the round failed). The tracker's peer count is only an estimate; this is
        # who really averaged.
        self.group_sizes: list[int] = []
        # hivemind 1.1.12 hands averager_opts to the state averager only, not to the gradient averager
        # (despite its docstring): pass them on here, or its request_timeout stays 3 s.
        factory = partial(
            GatedGradientAverager, swarm_key=swarm_key, run_id=run_id, **(kwargs.get("averager_opts") or {})
        )
        super().__init__(run_id=run_id, grad_averager_factory=factory, **kwargs)

    def _average_gradients_and_load_into_optimizer(self, maybe_step_control) -> None:
        super()._average_gradients_and_load_into_optimizer(maybe_step_control)
        size = 1
        if (
            maybe_step_control is not None
            and maybe_step_control.done()
            and not maybe_step_control.cancelled()
        ):
            if maybe_step_control.exception() is None:
                size = len(maybe_step_control.result())
        self.group_sizes.append(size)

    def _make_state_averager(self, **kwargs) -> TrainingStateAverager:
        # The same arguments as hivemind.Optimizer._make_state_averager (hivemind 1.1.12), gated.
        return GatedStateAverager(
            swarm_key=self._swarm_key,
            run_id=self.run_id,
            dht=self.dht,
            prefix=f"{self.run_id}_state_averager",
            min_matchmaking_time=self.matchmaking_time,
            allreduce_timeout=self.allreduce_timeout,
            shutdown_timeout=self.shutdown_timeout,
            offload_optimizer=self.offload_optimizer,
            custom_gradients=self.offload_optimizer,
            status_loglevel=self.status_loglevel,
            next_chunk_timeout=self.next_chunk_timeout,
            client_mode=self.client_mode,
            auxiliary=self.auxiliary,
            start=True,
            **kwargs,
        )
