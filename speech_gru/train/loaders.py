"""Samplers and loaders of a split: each rank's share in a seeded order
(``ShardedSampler``), and a DataLoader that continues an interrupted epoch
(``ResumableLoader``, its position in ``LoaderProgress``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from speech_gru.train.clips import PAD


class ShardedSampler(DistributedSampler):
    """One rank's share of a split, in an order fixed by the seed and the epoch.

    Rank ``r`` of ``n`` takes every ``n``-th index of the (shuffled) order, so each clip
    goes to exactly one rank. Ranks left one clip short are padded with ``PAD`` items,
    which count for nothing, so every rank runs the same number of batches without a clip
    being seen twice or dropped. A resumed run skips what its epoch already consumed.

    Args:
        dataset: the split.
        num_replicas: world size.
        rank: this process's global rank.
        shuffle: shuffle per epoch (training).
        seed: seed of the shuffle.
        tag_epoch: yield ``(index, epoch)`` keys (training), so per-epoch random
            content (generated silence) is a function of the epoch.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = False,
        seed: int = 0,
        tag_epoch: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas, rank, shuffle=shuffle, seed=seed)
        self.tag_epoch = tag_epoch
        self._skip: tuple[int, int] | None = None  # (epoch, items to skip)

    def skip(self, epoch: int, items: int) -> None:
        """Leave out the first ``items`` of ``epoch`` (already consumed before a restart)."""
        self._skip = (epoch, items)

    def __iter__(self):  # noqa: ANN204 - an iterator of dataset keys
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        mine = order[self.rank :: self.num_replicas]
        mine += [PAD] * (self.num_samples - len(mine))
        if self._skip is not None and self._skip[0] == self.epoch:
            mine = mine[self._skip[1] :]
        self._skip = None
        if self.tag_epoch:
            return iter([(i, self.epoch) if i != PAD else (PAD, 0) for i in mine])
        return iter(mine)


@dataclass
class LoaderProgress:
    """Where a loader is in its epoch, shared by the loader and the DataModule.

    Attributes:
        epoch: epoch of the current pass.
        batches: batches handed out in that pass (counting those skipped on resume).
        resume: ``(epoch, batches)`` of an interrupted pass to continue on the next pass.
    """

    epoch: int = 0
    batches: int = 0
    resume: tuple[int, int] | None = None


class ResumableLoader(DataLoader):
    """A DataLoader that can continue an interrupted epoch.

    Its progress (epoch, batches handed out) is saved with every checkpoint, through the
    DataModule's ``state_dict``. A resumed run skips, at the sampler, the batches the
    interrupted epoch had already trained on, so the rest of the epoch is exactly what the
    uninterrupted run would have seen; its length stays the whole epoch, as Lightning
    counts batches from the restored position.
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: ShardedSampler,
        progress: LoaderProgress | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.progress = progress or LoaderProgress()

    def __iter__(self):  # noqa: ANN204 - a generator of batches
        progress, epoch = self.progress, self.sampler.epoch
        done = 0
        if progress.resume is not None and progress.resume[0] == epoch:
            done = progress.resume[1]
            self.sampler.skip(epoch, done * self.batch_size)
        progress.resume = None
        progress.epoch, progress.batches = epoch, done
        for batch in super().__iter__():
            progress.batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.progress.epoch, "batches": self.progress.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.progress.resume = (state["epoch"], state["batches"])
