"""The training input path: worker count, single-threaded augmentation, augmentation on the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training import train as T


def test_workers_follow_the_cores_on_cuda_and_stay_in_process_on_cpu(monkeypatch):
    monkeypatch.setattr(T, "available_cpus", lambda: 16)
    assert T.default_workers("cuda") == 15 and T.default_workers("cpu") == 0
    monkeypatch.setattr(T, "available_cpus", lambda: 64)
    assert T.default_workers("cuda") == T.MAX_LOADER_WORKERS
    monkeypatch.setattr(T, "available_cpus", lambda: 1)
    assert T.default_workers("cuda") == 0


def test_augmentation_runs_on_the_device_only_on_cuda_and_when_asked_or_short_of_cores(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(T, "available_cpus", lambda: 2)
    assert T.augments_on_device(T.TrainConfig(), cuda)          # auto: 2 CPUs cannot feed a GPU
    assert not T.augments_on_device(T.TrainConfig(), cpu)
    assert not T.augments_on_device(T.TrainConfig(augment=False), cuda)
    assert not T.augments_on_device(T.TrainConfig(augment_on="loader"), cuda)
    monkeypatch.setattr(T, "available_cpus", lambda: 16)
    assert not T.augments_on_device(T.TrainConfig(), cuda)      # auto: 15 workers keep up
    assert T.augments_on_device(T.TrainConfig(augment_on="device"), cuda)
    with pytest.raises(ValueError, match="augment on"):
        T.TrainConfig(augment_on="gpu")


def test_augment_batch_keeps_shape_device_and_changes_the_images():
    transform = T.augmentation()
    transform.set_random_state(seed=1)
    x = torch.from_numpy(np.random.default_rng(0).random((8, 1, 32, 32), dtype=np.float32))
    out = T.augment_batch(transform, x)
    assert out.shape == x.shape and out.device == x.device and out.dtype == torch.float32
    assert not torch.equal(out, x)
    again = T.augmentation()
    again.set_random_state(seed=1)
    assert torch.equal(T.augment_batch(again, x), out)  # seeded: reproducible


def test_in_process_augmentation_uses_one_thread_and_restores_the_pool():
    seen = []

    def transform(x):
        seen.append(torch.get_num_threads())
        return x

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        images = np.zeros((2, 1, 4, 4), dtype=np.float32)
        labels = np.zeros((2, 1), dtype=np.float32)
        T.ArrayDataset(images, labels, labels, transform)[0]
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
