"""Types of the C accelerator (collectors/_fastpoll.c); see collectors/fastpoll.py."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

class Poll:
    ahead: int
    n: int
    def __init__(
        self,
        layout: Sequence[tuple[int, int, str, bool, bool, float, float]],
        lo: Sequence[float],
        hi: Sequence[float],
        moving: Sequence[int],
        counters: Sequence[int],
        stuck_polls: int,
    ) -> None: ...
    def poll(
        self, registers: bytes | bytearray | memoryview, health: Sequence[float], ts: int, /
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None: ...
    def state(self) -> tuple[list[float], list[int], list[float], list[float]]: ...
    def set_state(
        self, last: Sequence[float], unchanged: Sequence[int], prev: Sequence[float], prev2: Sequence[float], /
    ) -> None: ...
