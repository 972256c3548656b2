"""Stage 1 (content calibration network): `python train_ccn.py experiment=demo`. See conf/ccn.yaml."""

import hydra
from omegaconf import DictConfig

from dctnet.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="ccn")
def main(cfg: DictConfig) -> None:
    from dctnet.ccn.train import train_ccn

    for name, path in train_ccn(cfg).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
