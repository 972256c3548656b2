"""Inference for an exported CycleGAN generator: the backend protocol of dctnet.inference (batch in, batch out)."""

from __future__ import annotations

from pathlib import Path

import torch

from dctnet.baselines.cyclegan_nets import ResnetGenerator
from dctnet.checkpoints import CheckpointError, load_model_file, load_strict


class CycleGANBackend:
    def __init__(self, network: ResnetGenerator, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.stride = network.stride

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.network(batch.to(self.device).float()).cpu()


def load_cyclegan(path: str | Path, device: str | torch.device = "cpu") -> CycleGANBackend:
    state, header = load_model_file(path, kind="cyclegan")
    try:
        arch = header["arch"]
        network = ResnetGenerator(int(arch["ngf"]), int(arch["blocks"]), int(arch["downsamples"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its header does not describe a CycleGAN generator ({error})") from None
    load_strict(network, state, str(path))
    return CycleGANBackend(network, device)
