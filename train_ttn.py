"""Stage 2 (texture translation network): `python train_ttn.py experiment=demo`. See conf/ttn.yaml."""

import hydra
from omegaconf import DictConfig

from dctnet.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="ttn")
def main(cfg: DictConfig) -> None:
    from dctnet.ttn.train import train_ttn

    print(f"ttn: {train_ttn(cfg)}")


if __name__ == "__main__":
    main()
