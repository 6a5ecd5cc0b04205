"""Which task the next multi-task batch comes from.

Probabilities over tasks from their training-set sizes n_i (examples):

* ``proportional``: p_i = n_i / sum_j n_j (the methodology's default);
* ``temperature``:  p_i ∝ n_i ** (1 / T)  (T = 1 is proportional, T -> inf is uniform);
* ``capped``:       p_i ∝ min(n_i, K)     (examples-proportional mixing with a cap K).

The sampler owns its generator (numpy PCG64, seeded from the job seed), so nothing else that
draws random numbers changes its sequence, and its state is a plain JSON-able dict: a resumed
job sets it directly instead of replaying draws.
"""

from __future__ import annotations

# numpy is imported where it is used: the manifest parser imports SAMPLINGS, and plan and
# status must not pay for numpy (benchmarks/plan_and_status.py)

SAMPLINGS = ("proportional", "temperature", "capped")  # the manifest's `sampling` rule
SAMPLER_STREAM = 0x5A3  # distinguishes the sampler's seed sequence from the data order's


def task_probabilities(sizes: dict[str, int], sampling: str = "proportional",
                       temperature: float = 1.0, examples_cap: int | None = None
                       ) -> dict[str, float]:
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling {sampling!r} not in {SAMPLINGS}")
    names = list(sizes)
    import numpy as np

    n = np.array([float(sizes[t]) for t in names])
    if (n <= 0).any():
        raise ValueError(f"every task needs training examples: {sizes}")
    if sampling == "proportional":
        w = n
    elif sampling == "temperature":
        if not temperature or temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        w = n ** (1.0 / float(temperature))
    else:
        if not examples_cap or examples_cap <= 0:
            raise ValueError(f"capped sampling needs examples_cap > 0, got {examples_cap}")
        w = np.minimum(n, float(examples_cap))
    p = w / w.sum()
    return {t: float(x) for t, x in zip(names, p)}


class TaskSampler:
    def __init__(self, sizes: dict[str, int], seed: int, sampling: str = "proportional",
                 temperature: float = 1.0, examples_cap: int | None = None):
        self.tasks = list(sizes)
        self.probabilities = task_probabilities(sizes, sampling, temperature, examples_cap)
        import numpy as np

        self._p = np.array([self.probabilities[t] for t in self.tasks])
        self._rng = np.random.Generator(np.random.PCG64([int(seed), SAMPLER_STREAM]))

    def next_task(self) -> str:
        if len(self.tasks) == 1:
            return self.tasks[0]
        return self.tasks[int(self._rng.choice(len(self.tasks), p=self._p))]

    def state_dict(self) -> dict:
        return {"tasks": list(self.tasks), "bit_generator": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        if list(state["tasks"]) != self.tasks:
            raise ValueError(f"sampler state is for tasks {state['tasks']}, not {self.tasks}")
        self._rng.bit_generator.state = state["bit_generator"]
