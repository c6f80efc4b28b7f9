"""Run a fast sweep's blocks on a Dask cluster; hand back each config's outcome as it arrives.

Dask's ``distributed`` does the scheduling: its scheduler hands blocks to idle workers, moves
the blocks of a worker that dies to the others, and retries a block at most
``distributed.scheduler.allowed-failures`` times. The same code runs on a LocalCluster
(``local:N``), on machines started with ``dask scheduler`` / ``dask worker``
(``tcp://host:8786``), or on Kubernetes and SLURM through dask-kubernetes / dask-jobqueue, whose
scheduler has an address like any other.

Workers read nothing from the client's disk: the prepared splits (about 55 MB) are scattered
once to every worker, and each block carries its composed configs. Only the client talks to
MLflow, one child run per config as its block comes back, so a block that runs twice (its
first worker died after finishing it) is still logged once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from mnist_softmax.cluster.address import LOCAL
from mnist_softmax.config import Config
from mnist_softmax.errors import ClusterError
from mnist_softmax.redact import redact_text
from mnist_softmax.sweeps.fast_sweep import ConfigOutcome, SweepData, SweepPlan, run_block

log = logging.getLogger(__name__)

MAX_BLOCK = 16  # configs per block: wider stacks gain little per config beyond this
BLOCKS_PER_WORKER = 2  # at least: no worker idles while another finishes, and a loss costs less


def plan_blocks(
    stacks: Sequence[Sequence[int]], workers: int, block_size: int | None = None
) -> list[list[int]]:
    """Split each stack into blocks of nearly equal size, the unit a worker runs.

    Without ``block_size``: as large as possible while every worker gets at least
    ``BLOCKS_PER_WORKER`` blocks, and never over ``MAX_BLOCK``.
    """
    total = sum(len(stack) for stack in stacks)
    if block_size is None:
        block_size = math.ceil(total / (max(workers, 1) * BLOCKS_PER_WORKER))
        block_size = max(1, min(MAX_BLOCK, block_size))
    blocks = []
    for stack in stacks:
        n_blocks = math.ceil(len(stack) / block_size)
        size, extra = divmod(len(stack), n_blocks)
        start = 0
        for i in range(n_blocks):
            end = start + size + (1 if i < extra else 0)
            blocks.append(list(stack[start:end]))
            start = end
    return blocks


@dataclass(frozen=True)
class BlockResult:
    """What a worker sends back for one block: (grid index, outcome) pairs and who ran it."""

    outcomes: list[tuple[int, ConfigOutcome]]
    worker: str
    seconds: float


def run_block_on_worker(
    data: SweepData,
    indices: list[int],
    grid: list[tuple[str, ...]],
    cfgs: list[Config],
) -> BlockResult:
    """The task a worker runs: one block, one BLAS thread (a worker per core)."""
    from distributed import get_worker

    started = time.perf_counter()
    outcomes = run_block(data, grid, cfgs, threads=1)
    seconds = time.perf_counter() - started
    return BlockResult(list(zip(indices, outcomes, strict=True)), get_worker().address, seconds)


class ClusterRun:
    """One sweep on one cluster; after :meth:`run`, ``workers`` names who ran its blocks.

    shipped_bytes : array bytes of the prepared data sent to each worker (once per worker)
    """

    def __init__(
        self,
        address: str,
        block_size: int | None = None,
        connect_timeout_s: float | None = None,
    ) -> None:
        """connect_timeout_s : to reach the scheduler, and for a first worker to join it;
        by default Dask's own ``distributed.comm.timeouts.connect`` (30 s; the environment
        variable ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT`` sets it, e.g. ``5s``)."""
        self.address = address
        self.shown = redact_text(address)  # never credentials in a line or a tag
        self.block_size = block_size
        if connect_timeout_s is None:
            import dask.config
            import distributed  # noqa: F401  (registers its config defaults)
            from dask.utils import parse_timedelta

            connect = dask.config.get("distributed.comm.timeouts.connect")
            connect_timeout_s = parse_timedelta(connect, default="seconds")
        self.connect_timeout_s = connect_timeout_s
        self.workers: set[str] = set()
        self.shipped_bytes = 0

    def run(self, plan: SweepPlan, data: SweepData) -> Iterator[tuple[int, ConfigOutcome]]:
        """Yield (grid index, outcome) for every config, in the order blocks finish."""
        from distributed import as_completed

        with self._client() as client:
            n_workers = self._wait_for_workers(client)
            blocks = plan_blocks(plan.stacks(), n_workers, self.block_size)
            log.info(
                "%d configs in %d blocks on %d workers of %s",
                len(plan.cfgs), len(blocks), n_workers, self.shown,
            )  # fmt: skip
            started = time.perf_counter()
            shared = self._guard(lambda: client.scatter(data, broadcast=True, hash=False))
            self.shipped_bytes = data.nbytes
            log.info(
                "prepared data: %.1f MB to each worker in %.1f s",
                data.nbytes / 1e6, time.perf_counter() - started,
            )  # fmt: skip
            futures = [self._submit(client, shared, plan, block) for block in blocks]
            for done, future in enumerate(as_completed(futures, loop=client.loop), start=1):
                result: BlockResult = self._guard(future.result)
                self.workers.add(result.worker)
                log.info(
                    "block %d/%d: %d configs on %s in %.1f s",
                    done, len(blocks), len(result.outcomes), result.worker, result.seconds,
                )  # fmt: skip
                yield from result.outcomes

    @staticmethod
    def _submit(client: object, shared: object, plan: SweepPlan, block: list[int]) -> object:
        grid, cfgs = [plan.grid[k] for k in block], [plan.cfgs[k] for k in block]
        return client.submit(run_block_on_worker, shared, block, grid, cfgs, pure=False)

    @contextmanager
    def _client(self) -> Iterator[object]:
        """A client of the scheduler at ``address``, or of a new LocalCluster for ``local:N``."""
        from distributed import Client, LocalCluster

        for name in ("distributed", "distributed.client"):  # its chatter is not the sweep's
            logging.getLogger(name).setLevel(logging.CRITICAL)
        local = LOCAL.fullmatch(self.address)
        if local:
            n = int(local.group(1))
            log.info("starting a LocalCluster of %d worker processes", n)
            with (
                LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                ) as cluster,  # fmt: skip
                Client(cluster, set_as_default=False) as client,
            ):
                yield client
            return
        try:
            client = Client(self.address, timeout=self.connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"Dask scheduler {self.shown} unreachable: {_first_line(exc)}"
            ) from None
        try:
            yield client
        finally:
            client.close(timeout=5)

    def _wait_for_workers(self, client: object) -> int:
        try:
            client.wait_for_workers(1, timeout=self.connect_timeout_s)
        except TimeoutError:
            raise ClusterError(
                f"no worker joined the Dask scheduler {self.shown} within "
                f"{self.connect_timeout_s:.0f} s: start some (`dask worker {self.shown}`)"
            ) from None
        return len(self._guard(client.scheduler_info)["workers"])

    def _guard(self, call: object) -> object:
        """Call ``call()``; turn a lost scheduler or a block that kept killing workers into
        one :class:`ClusterError` line naming the address."""
        from concurrent.futures import CancelledError

        from distributed import KilledWorker
        from distributed.comm.core import CommClosedError

        try:
            return call()
        except KilledWorker as exc:
            raise ClusterError(
                f"a block was lost with every worker that ran it on {self.shown} "
                f"({_first_line(exc)}); are the workers running out of memory?"
            ) from None
        except CancelledError:
            raise ClusterError(
                f"lost the Dask scheduler {self.shown} mid-sweep (connection lost)"
            ) from None
        except (CommClosedError, OSError, TimeoutError) as exc:
            raise ClusterError(
                f"lost the Dask scheduler {self.shown} mid-sweep: "
                f"{_first_line(exc) or type(exc).__name__}"
            ) from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""
