"""Baselines of the paper's comparison: `python train_baseline.py baseline=cyclegan experiment=demo` (or
baseline=toonify, after train_ccn.py in the same run_dir). See conf/baselines.yaml."""

import hydra
from omegaconf import DictConfig

from dctnet.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="baselines")
def main(cfg: DictConfig) -> None:
    from dctnet.baselines.train import train_baseline

    print(f"{cfg.baseline}: {train_baseline(cfg)}")


if __name__ == "__main__":
    main()
